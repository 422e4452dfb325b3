"""MQTT payloads refused as a whole, as the dead letters the gateway keeps (edge.rejects)."""
from __future__ import annotations

from connectors.mqtt import routing
from edge.model import now_ns
from edge.rejects import BAD_SPARKPLUG, HEAD_BYTES, INVALID, OVERSIZE, UNKNOWN_DEVICE, UNMAPPABLE, Reject

__all__ = ["reject", "from_route", "INVALID", "OVERSIZE", "UNKNOWN_DEVICE", "UNMAPPABLE", "BAD_SPARKPLUG"]


def reject(payload: bytes, *, topic: str, device_id: str | None, reason: str, error: Exception,
           arrived_ns: int | None = None) -> Reject:
    """The dead letter of `payload`, received on `topic` (now, unless `arrived_ns` is given)."""
    return Reject.of(payload, arrived_ns=now_ns() if arrived_ns is None else arrived_ns,
                     source="mqtt", topic=topic, device_id=device_id, reason=reason, detail=str(error))


def from_route(r: routing.Reject) -> Reject:
    """A route's reject (connectors/mqtt/routing.py) as the dead letter the gateway keeps."""
    return Reject(int(r.receive_ns), "mqtt", r.topic, r.device_id or "", r.reason, r.detail,
                  int(r.payload_bytes or len(r.payload_head)), bytes(r.payload_head[:HEAD_BYTES]))
