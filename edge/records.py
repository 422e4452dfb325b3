"""Rows of the embedded store as the rest of shangyun sees them (returned by edge.store.Store)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import IdentityEvidence


@dataclass(frozen=True)
class DeviceRecord:
    """A registered device: what the config says (name...) plus what the gateway observed.

    `identity` is the evidence last stored with `Store.set_identity`; `online`, `last_seen_ns`
    (last time it was reported online), `first_seen_ns` (first time online) and `last_error`
    come from `Store.set_status`.
    """

    id: str
    name: str
    protocol: str
    profile: str
    line: str
    location: str
    ideal_cycle_s: float | None
    identity: IdentityEvidence | None
    online: bool
    last_seen_ns: int | None
    first_seen_ns: int | None
    last_error: str | None
    # Newest sample timestamp received for the device (any signal), from the rollup progress
    # the store keeps on every write; None before the first sample.
    last_sample_ns: int | None = None


@dataclass(frozen=True)
class Event:
    """Something that happened: onboarding, connect/disconnect, identity change, bad payload..."""

    id: int
    ts_ns: int
    device_id: str | None
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    """A sample the store refused, kept as text so any value, however broken, can be recorded.

    `ts` is the sample's timestamp as text (it may not fit int64), `value` the repr of its value,
    truncated; `reason` why it was refused. `arrived_ns` is when it was dead-lettered.
    """

    id: int
    arrived_ns: int
    device_id: str
    signal: str
    ts: str
    value: str
    reason: str
