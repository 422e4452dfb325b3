"""claimed_before: a device already claimed in an earlier voucher (`--against`).

An earlier claim may be a whole store (its features and devices) or only a list of what was
claimed: device ids, serial numbers, identity fingerprints. A device matches by identity, or by
days of data identical to the earlier claim's (the same history submitted twice).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..cube import DeviceInfo, Flag
from .config import DistinctConfig
from .features import FeatureBlock


@dataclass
class AgainstSet:
    """What an earlier claim contains. `label` names it in the evidence (a file or store path)."""

    label: str = "earlier claim"
    ids: frozenset[str] = frozenset()
    serials: frozenset[str] = frozenset()
    fingerprints: frozenset[str] = frozenset()
    features: FeatureBlock | None = None
    devices: Sequence[DeviceInfo] = field(default_factory=list)

    @classmethod
    def from_devices(
        cls,
        devices: Sequence[DeviceInfo],
        features: FeatureBlock | None = None,
        label: str = "earlier claim",
    ) -> "AgainstSet":
        """An earlier store: its devices' identities, and its features for identical days."""
        return cls(
            label=label,
            ids=frozenset(d.id for d in devices),
            serials=frozenset(d.identity.serial_number for d in devices
                              if d.identity and d.identity.serial_number),
            fingerprints=frozenset(d.identity.fingerprint() for d in devices
                                   if d.identity and d.identity.fingerprint()),
            features=features,
            devices=list(devices),
        )

    @classmethod
    def from_lists(
        cls,
        ids: Iterable[str] = (),
        serials: Iterable[str] = (),
        fingerprints: Iterable[str] = (),
        label: str = "earlier claim",
    ) -> "AgainstSet":
        clean = lambda xs: frozenset(x.strip() for x in xs if x and x.strip())  # noqa: E731
        return cls(label=label, ids=clean(ids), serials=clean(serials), fingerprints=clean(fingerprints))


def claimed_flags(
    block: FeatureBlock,
    devices: Sequence[DeviceInfo],
    against: Sequence[AgainstSet],
    config: DistinctConfig,
) -> list[Flag]:
    flags: list[Flag] = []
    for earlier in against:
        day_owner = _digest_owners(earlier)
        for i, device in enumerate(devices):
            match = _identity_match(device, earlier, config)
            if match:
                measure, value = match
                flags.append(Flag(
                    device_id=device.id,
                    reason="claimed_before",
                    message=f"{device.id} was already claimed in {earlier.label} ({measure} {value})",
                    measure=measure,
                    evidence={"against": earlier.label, measure: value},
                ))
                continue
            hit = _identical_days(block, i, day_owner)
            if hit and len(hit[0]) >= config.replay_min_days:
                days, originals, other = hit
                flags.append(Flag(
                    device_id=device.id,
                    reason="claimed_before",
                    message=(f"{device.id} repeats {len(days)} day(s) of {other} "
                             f"from {earlier.label} exactly"),
                    other_device=other,
                    days=days,
                    measure="identical_days_in_earlier_claim",
                    value=float(len(days)),
                    threshold=float(config.replay_min_days),
                    evidence={"against": earlier.label, "original_days": originals},
                ))
    return flags


def _identity_match(device: DeviceInfo, earlier: AgainstSet, config: DistinctConfig) -> tuple[str, str] | None:
    ident = device.identity
    if ident is not None:
        if ident.fingerprint() and ident.fingerprint() in earlier.fingerprints:
            return "identity_fingerprint", ident.fingerprint()
        if ident.serial_number and ident.serial_number in earlier.serials:
            return "serial_number", ident.serial_number
    if config.against_match_ids and device.id in earlier.ids:
        return "device_id", device.id
    return None


def _digest_owners(earlier: AgainstSet) -> dict[int, tuple[str, str]]:
    """digest -> (earlier device id, day) over the earlier claim's informative days."""
    f = earlier.features
    if f is None:
        return {}
    dev, day = np.nonzero(f.day_informative)
    return {int(f.day_digest[i, k]): (f.device_ids[i], str(f.days[k])) for i, k in zip(dev, day)}


def _identical_days(
    block: FeatureBlock, i: int, owners: dict[int, tuple[str, str]]
) -> tuple[tuple[str, ...], list[str], str] | None:
    if not owners:
        return None
    hits = [(str(block.days[k]), owners[int(block.day_digest[i, k])])
            for k in np.nonzero(block.day_informative[i])[0]
            if int(block.day_digest[i, k]) in owners]
    if not hits:
        return None
    # Report against the earlier device most of the repeated days came from.
    others = [o for _, (o, _) in hits]
    other = max(set(others), key=others.count)
    days = tuple(d for d, (o, _) in hits if o == other)
    originals = [od for _, (o, od) in hits if o == other]
    return days, originals, other
