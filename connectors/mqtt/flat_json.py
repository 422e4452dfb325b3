"""The fast path of DeviceMapping (connectors/mqtt/mapping.py) for the common telemetry payload:
a flat JSON object whose every signal path is one key, `{"ts": ..., "temp": 21.5, ...}`.

A `FlatPlan` is compiled once per device. Per message it parses the object without
`json.loads`' encoding detection and whitespace regex, and per field it does only what the
field needs:
- a signal whose `SignalSpec.check` is the identity (not judged by a role, no scale or offset: `SignalSpec.passes_through`)
  takes a value of the right type within the payload limits as it is, without `as_value` and
  `check` (tests/connectors/test_mqtt_mapping.py checks that identity on arbitrary values);
- any other signal goes through `as_value` and `check`, whose result for a text value (a state
  name) is remembered: `check` is a pure function of the frozen SignalSpec and the raw value.
Anything it does not handle exactly (not UTF-8, not one object, nested values, whitespace
around the object) returns None and the general decoder (payload.decode_payload) decides, so
both paths give the same samples and errors (tests/connectors/test_mqtt_mapping.py).
"""
from __future__ import annotations

import json
from typing import Any, Callable

from connectors.mqtt.payload import _INT64, _MISSING, Limits, as_value, parse_timestamp
from edge.errors import PayloadError
from edge.model import Quality, Sample, SignalSpec, Value

FieldErrorFn = Callable[[str, PayloadError], None]

BAD_VALUE = ""          # value of a BAD sample: there is no reading, and "" cannot pass for one
_MEMO_MAX = 64          # text values remembered per signal: state names, a handful
_GOOD, _BAD = Quality.GOOD, Quality.BAD
_scan = json.JSONDecoder().scan_once     # json.loads' own scanner, without the wrapping


def parse_flat_object(payload: bytes) -> dict[str, Any] | None:
    """The JSON object of `payload` when it is one flat object exactly, else None."""
    try:
        text = payload.decode("utf-8")
        doc, end = _scan(text, 0)
    except (UnicodeDecodeError, StopIteration, ValueError, RecursionError):
        return None     # incl. leading whitespace, a BOM, an int too long to parse
    if end != len(text) or type(doc) is not dict:
        return None
    for v in doc.values():
        if type(v) is dict or type(v) is list:
            return None     # nested: the general path checks max_json_depth
    return doc


class FlatPlan:
    def __init__(self, device_id: str, fields: list[tuple[str, str, SignalSpec]], ts_key: str | None,
                 limits: Limits):
        """`fields`: (signal name, JSON key, its spec) per signal."""
        self.device_id = device_id
        self.ts_key = ts_key
        self.limits = limits
        self._steps = [(name, key, signal, signal.passes_through, {}) for name, key, signal in fields]

    def samples(self, doc: dict[str, Any], receive_ns: int, field_error: FieldErrorFn,
                matched: set[str] | None) -> tuple[list[Sample], bool]:
        """The samples of one flat object and whether their timestamp came from it; the signals
        present are taken out of `matched` (when given)."""
        ts, from_payload = receive_ns, False
        if self.ts_key is not None:
            ts_raw = doc.get(self.ts_key, _MISSING)
            if ts_raw is not _MISSING:
                try:
                    ts, from_payload = parse_timestamp(ts_raw), True
                except PayloadError as err:
                    field_error("ts", err)
        device_id, limits = self.device_id, self.limits
        max_chars, lo, hi = limits.max_string_chars, _INT64[0], _INT64[1]
        out: list[Sample] = []
        append = out.append
        for name, key, signal, plain, memo in self._steps:
            raw = doc.get(key, _MISSING)
            if raw is _MISSING:
                continue  # partial messages are normal: a device reports what changed
            if matched is not None:
                matched.discard(name)
            t = type(raw)
            if plain and ((t is float and raw - raw == 0.0) or (t is int and lo <= raw <= hi)
                          or (t is str and len(raw) <= max_chars) or t is bool):
                append(Sample(device_id, name, ts, raw, _GOOD))
                continue
            if t is str:
                hit = memo.get(raw)
                if hit is not None:
                    append(Sample(device_id, name, ts, hit[0], hit[1]))
                    continue
            try:
                value: Value = as_value(raw, key, limits)
            except PayloadError as err:
                field_error(name, err)
                append(Sample(device_id, name, ts, BAD_VALUE, _BAD))
                continue
            value, quality, problem = signal.check(value)
            if problem is not None:
                field_error(name, problem)
            elif t is str and len(memo) < _MEMO_MAX:
                memo[raw] = (value, quality)
            append(Sample(device_id, name, ts, value, quality))
        return out, from_payload
