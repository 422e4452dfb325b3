"""One device's signal mapping: a telemetry payload -> its Samples (no I/O, no paho).

Used by the per-device connection (connectors/mqtt/source.py) and by topic routes on a shared
connection (connectors/mqtt/template_route.py), so a payload maps the same way on both.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from connectors.mqtt.config import FieldPath, MqttConnection, split_path
from connectors.mqtt.flat_json import BAD_VALUE, FlatPlan, parse_flat_object
from connectors.mqtt.payload import Decoded, Limits, decode_payload, parse_json
from connectors.validation import address_of
from edge.errors import PayloadError
from edge.model import DeviceSpec, IdentityEvidence, Quality, Sample

__all__ = ["BAD_VALUE", "DeviceMapping", "FROM_DEVICE", "FROM_GATEWAY", "birth_evidence", "limits_of",
           "parse_birth"]

# Where a sample's timestamp came from (common convention: `time_sources()`).
FROM_DEVICE = "device"      # the payload's timestamp field
FROM_GATEWAY = "gateway"    # arrival time: the payload had none

FieldErrorFn = Callable[[str, PayloadError], None]   # (signal or "ts", error)
"""Reports one bad field of a message; the message's other fields are still stored."""


def limits_of(cfg: MqttConnection) -> Limits:
    return Limits(max_depth=cfg.max_json_depth, max_string_chars=cfg.max_string_chars,
                  max_batch_readings=cfg.max_batch_readings)


class DeviceMapping:
    def __init__(self, device: DeviceSpec, cfg: MqttConnection):
        self.device_id = device.id
        self.fields = {s.name: address_of(FieldPath, device, s).parts for s in device.signals}
        self._signals = {s.name: s for s in device.signals}
        self._ts_path = split_path(cfg.timestamp_field) if cfg.timestamp_field else None
        self._fmt = cfg.payload_format
        self.limits = limits_of(cfg)
        self._warn_after = cfg.unmatched_warn_after
        self._decoded = 0
        self._unmatched: set[str] | None = set(self.fields)   # None once checked
        self.time_sources = {FROM_DEVICE: 0, FROM_GATEWAY: 0}
        # The common case, a flat JSON object with every path one key, mapped without the
        # general decoder's intermediate objects (same results: tests/connectors/test_mqtt_mapping.py).
        flat = all(len(p) == 1 for p in self.fields.values()) and (self._ts_path is None or len(self._ts_path) == 1)
        self._flat: FlatPlan | None = None
        if flat and self._fmt in ("auto", "json"):
            self._flat = FlatPlan(device.id, [(name, parts[0], self._signals[name]) for name, parts in self.fields.items()],
                                  self._ts_path[0] if self._ts_path else None, self.limits)

    def disable_fast_path(self) -> None:
        """Map every payload with the general decoder (the fast path's reference, for tests and
        tests/bench/bench_mqtt_connector.py)."""
        self._flat = None

    def samples(self, payload: bytes, receive_ns: int, field_error: FieldErrorFn) -> list[Sample]:
        """The samples of one message; a message that cannot be read at all raises PayloadError."""
        if self._flat is not None:
            doc = parse_flat_object(payload)
            if doc is not None:
                out, from_payload = self._flat.samples(doc, receive_ns, field_error, self._unmatched)
                if self._unmatched is not None:
                    self._decoded += 1
                self.time_sources[FROM_DEVICE if from_payload else FROM_GATEWAY] += len(out)
                return out
        readings = decode_payload(payload, self.fields, ts_path=self._ts_path, receive_ns=receive_ns,
                                  limits=self.limits, fmt=self._fmt)  # type: ignore[arg-type]
        out: list[Sample] = []
        for decoded in readings:
            if self._unmatched is not None:
                self._note_matches(decoded)
            before = len(out)
            self._samples_of(decoded, out, field_error)
            self.time_sources[FROM_DEVICE if decoded.ts_from_payload else FROM_GATEWAY] += len(out) - before
        return out

    def unmatched_problems(self) -> list[PayloadError]:
        """Once, after `unmatched_warn_after` payloads: a signal whose path matched nothing in
        any of them, almost always a typo in the config (or a firmware that renamed the field)."""
        if self._unmatched is None or self._decoded < self._warn_after:
            return []
        problems = [PayloadError(f"signal {name}: path {'.'.join(self.fields[name])!r} matched nothing "
                                 f"in {self._decoded} payloads") for name in sorted(self._unmatched)]
        self._unmatched = None      # checked once per mapping
        return problems

    def _samples_of(self, decoded: Decoded, out: list[Sample], field_error: FieldErrorFn) -> None:
        device_id, ts = self.device_id, decoded.ts_ns
        for name, err in decoded.errors.items():
            field_error(name, err)
            if name in self._signals:
                out.append(Sample(device_id, name, ts, BAD_VALUE, Quality.BAD))
        signals = self._signals
        for name, raw in decoded.values.items():
            value, quality, problem = signals[name].check(raw)
            if problem is not None:   # wrong type or range for the role: counted, not GOOD
                field_error(name, problem)
            out.append(Sample(device_id, name, ts, value, quality))

    def _note_matches(self, decoded: Any) -> None:
        assert self._unmatched is not None
        self._unmatched.difference_update(decoded.values)
        self._unmatched.difference_update(decoded.errors)
        self._decoded += 1


def parse_birth(payload: bytes, limits: Limits) -> dict[str, Any]:
    """A birth message: a JSON object of identity fields (client_id, serial_number, ...)."""
    doc = dict(parse_json(payload, limits))
    too_long = [k for k, v in doc.items() if len(str(v)) > limits.max_string_chars]
    if too_long:
        raise PayloadError(f"birth message fields {too_long} are longer than max_string_chars "
                           f"{limits.max_string_chars}")
    return doc


def birth_evidence(birth: Mapping[str, Any], endpoint: str, tls_details: Mapping[str, str]) -> IdentityEvidence:
    known = ("client_id", "serial_number")
    return IdentityEvidence(
        protocol="mqtt", endpoint=endpoint,
        client_id=str(birth.get("client_id", "")), serial_number=str(birth.get("serial_number", "")),
        details={**{k: str(v) for k, v in birth.items() if k not in known}, **tls_details})
