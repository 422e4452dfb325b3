"""Of a group of device ids that are one machine, which one is counted.

In order: a device that follows another of the group (its signal lags, see `direction`) is the
copy and goes behind; then identity evidence — a serial number, application URI or certificate
of its own beats one shared with another device, which beats none; only then the earliest first
data and the smallest id.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

from ..cube import DeviceInfo
from .links import Link

KeepKey = Callable[[int], tuple]


def identity_strength(devices: Sequence[DeviceInfo]) -> list[int]:
    """0: identity evidence of its own; 1: evidence another device presents too; 2: none."""
    fingerprints = [_fingerprint(d) for d in devices]
    seen: dict[str, int] = {}
    for fp in fingerprints:
        if fp:
            seen[fp] = seen.get(fp, 0) + 1
    return [2 if not fp else (1 if seen[fp] > 1 else 0) for fp in fingerprints]


def _fingerprint(device: DeviceInfo) -> str:
    ident = device.identity
    if ident is None or not (ident.serial_number or ident.application_uri
                             or ident.certificate_sha256):
        return ""
    return ident.fingerprint() or ""


def keep_key(links: Iterable[Link], devices: Sequence[DeviceInfo],
             order_key: Callable[[int], tuple[int, str]]) -> KeepKey:
    """Sort key: the smallest member of a group is kept, and flags point to members ahead."""
    followers = {link.follower for link in links if link.follower is not None}
    strength = identity_strength(devices)
    return lambda i: (i in followers, strength[i], *order_key(i))
