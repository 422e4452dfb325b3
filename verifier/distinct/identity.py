"""shared_identity and shared_endpoint: one machine behind several device ids, by what it says."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterator, Sequence

from edge.model import IdentityEvidence

from ..cube import DeviceInfo
from .config import DistinctConfig
from .links import Link


def endpoint_key(identity: IdentityEvidence | None, qualifier_keys: Sequence[str]) -> str:
    """What one physical connection is, or '' when unknown.

    MQTT devices all share the broker, so their connection is the client id; elsewhere it is the
    endpoint URL plus whatever legitimately tells apart devices behind one connection.
    """
    if identity is None:
        return ""
    if identity.protocol.lower() == "mqtt" or (identity.client_id and not identity.endpoint):
        return f"mqtt-client:{identity.client_id}" if identity.client_id else ""
    endpoint = identity.endpoint.strip().lower().rstrip("/")
    if not endpoint:
        return ""
    qualifiers = [f"{k}={identity.details[k]}" for k in qualifier_keys if identity.details.get(k)]
    return endpoint + ("#" + "&".join(qualifiers) if qualifiers else "")


def identity_links(
    devices: Sequence[DeviceInfo],
    config: DistinctConfig,
    order_key: Callable[[int], tuple[int, str]],
) -> Iterator[Link]:
    yield from _group_links(
        devices, order_key,
        key=lambda d: d.identity.fingerprint() if d.identity else "",
        reason="shared_identity",
        measure="identity_fingerprint",
        message="{device} presents the same identity evidence as {other} ({key})",
    )
    yield from _group_links(
        devices, order_key,
        key=lambda d: endpoint_key(d.identity, config.endpoint_qualifier_keys),
        reason="shared_endpoint",
        measure="endpoint",
        message="{device} is read from the same endpoint as {other} ({key})",
    )


def _group_links(
    devices: Sequence[DeviceInfo],
    order_key: Callable[[int], tuple[int, str]],
    key: Callable[[DeviceInfo], str],
    reason: str,
    measure: str,
    message: str,
) -> Iterator[Link]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, device in enumerate(devices):
        k = key(device)
        if k:
            groups[k].append(i)
    for k, members in groups.items():
        # A star around the device that will be kept is enough: grouping is transitive.
        members.sort(key=order_key)
        for j in members[1:]:
            yield Link(
                a=members[0], b=j, reason=reason,
                message=message.replace("{key}", k),
                measure=measure,
                evidence={measure: k, "devices_sharing": [devices[m].id for m in members]},
            )
