"""MQTT payloads refused as a whole, as the dead letters the gateway keeps (edge.rejects)."""
from __future__ import annotations

from edge.model import now_ns
from edge.rejects import INVALID, OVERSIZE, UNKNOWN_DEVICE, UNMAPPABLE, BAD_SPARKPLUG, Reject

__all__ = ["reject", "INVALID", "OVERSIZE", "UNKNOWN_DEVICE", "UNMAPPABLE", "BAD_SPARKPLUG"]


def reject(payload: bytes, *, topic: str, device_id: str | None, reason: str, error: Exception,
           arrived_ns: int | None = None) -> Reject:
    """The dead letter of `payload`, received on `topic` (now, unless `arrived_ns` is given)."""
    return Reject.of(payload, arrived_ns=now_ns() if arrived_ns is None else arrived_ns,
                     source="mqtt", topic=topic, device_id=device_id, reason=reason, detail=str(error))
