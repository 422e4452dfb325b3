"""Pure decoding of telemetry payloads: values by field path and each reading's timestamp.

Payload forms (`payload_format`; `auto`, the default, tells them apart):
- a JSON object: one reading, fields by dotted path (a segment of digits indexes an array);
- a JSON array of objects: a batch, each element one reading with its own timestamp
  (`[{"ts": 1700000000, "v": 1}, {"ts": 1700000001, "v": 2}]`); an element that is not an
  object, a reading without a readable timestamp in a batch of several, or more readings than
  `max_batch_readings`, is a payload error for the whole batch (half a batch stored would look
  complete);
- a bare JSON value (`21.5`, `true`, `"running"`): one reading whose only field is `value`;
- key=value text (`temp=21.5,state=running`; pairs separated by `,` `;` `&` or white space): one
  reading, keys matched against the whole path (`data.power=3` is path `data.power`); values
  that read as an integer, a decimal number or true/false are those, anything else is text.
`auto` tries JSON first, then key=value text when the payload has an `=`.

Timestamp forms accepted in the payload's timestamp field:
- a number of epoch seconds (int or float);
- a larger number, told apart by magnitude: >= 1e11 is epoch milliseconds (1e11 s would be the
  year 5138, 1e11 ms is 1973), >= 1e14 microseconds, >= 1e17 nanoseconds;
- a numeric string, read the same way;
- an ISO 8601 string with an offset or Z; without one it is taken as UTC (devices that log
  local time without saying so are misconfigured, and guessing the gateway's zone would hide it).
A missing timestamp field means receive time; a present but unreadable one is an error
(the values are still used, at receive time).

`Limits` bound what one message may cost: JSON nested deeper than `max_depth` is refused as a
whole (Python's parser would otherwise recurse until RecursionError), a string value longer
than `max_string_chars` is a bad field (it is never stored), and so is an integer SQLite cannot
hold. The payload's size is checked before this module sees it (connectors/mqtt/source.py).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Mapping, Sequence

from connectors.timeconv import datetime_to_ns
from edge.errors import PayloadError
from edge.model import Value

_MS, _US, _NS = 1e11, 1e14, 1e17
_EXCESS_FRACTION = re.compile(r"(\.\d{6})\d+")  # datetime keeps microseconds only


@dataclass
class Decoded:
    ts_ns: int
    ts_from_payload: bool
    values: dict[str, Value] = field(default_factory=dict)
    errors: dict[str, PayloadError] = field(default_factory=dict)  # signal (or "ts") -> what was wrong


@dataclass(frozen=True)
class Limits:
    max_depth: int = 32
    max_string_chars: int = 256
    max_batch_readings: int = 1000


DEFAULT_LIMITS = Limits()
_INT64 = (-(2**63), 2**63 - 1)
_MISSING = object()


def parse_json(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Mapping[str, Any]:
    doc = parse_json_value(raw, limits)
    if not isinstance(doc, dict):
        raise PayloadError(f"expected a JSON object, got {type(doc).__name__}")
    return doc


def parse_json_value(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise PayloadError(f"JSON nested deeper than {limits.max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as err:  # ValueError: also an int of > 4300 digits
        raise PayloadError(f"not JSON: {err}") from None
    # Depth cannot exceed the number of opening brackets: the walk is needed only past that.
    if raw.count(b"[") + raw.count(b"{") > limits.max_depth and _deeper_than(doc, limits.max_depth):
        raise PayloadError(f"JSON nested deeper than {limits.max_depth} levels")
    return doc


def _deeper_than(doc: Any, max_depth: int) -> bool:
    if not isinstance(doc, (dict, list)):
        return False
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def lookup(doc: Any, parts: Sequence[str]) -> Any:
    """The value at `parts`, or _MISSING when the path is absent."""
    node = doc
    for p in parts:
        if isinstance(node, dict):
            node = node.get(p, _MISSING)
        elif isinstance(node, list) and p.isdigit():
            node = node[int(p)] if int(p) < len(node) else _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def as_value(raw: Any, path: str, limits: Limits = DEFAULT_LIMITS) -> Value:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int):
        if not _INT64[0] <= raw <= _INT64[1]:
            raise PayloadError(f"{path}: integer {_abbrev(str(raw))} does not fit 64 bits")
        return raw
    if isinstance(raw, str):
        if len(raw) > limits.max_string_chars:
            raise PayloadError(f"{path}: string of {len(raw)} characters, longer than "
                               f"max_string_chars {limits.max_string_chars}: {_abbrev(raw)!r}")
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise PayloadError(f"{path}: {raw} is not a finite number")
        return raw
    kind = "null" if raw is None else type(raw).__name__
    raise PayloadError(f"{path}: expected a number, bool or string, got {kind}")


def _abbrev(text: str, keep: int = 24) -> str:
    return text if len(text) <= keep else f"{text[:keep]}..."


def parse_timestamp(raw: Any) -> int:
    """UTC nanoseconds from any accepted form (module docstring)."""
    if isinstance(raw, bool):
        raise PayloadError(f"timestamp {raw!r} is a bool")
    if isinstance(raw, str):
        text = raw.strip()
        try:
            return _epoch_to_ns(float(text), exact=int(text) if text.lstrip("-").isdigit() else None)
        except ValueError:
            pass
        try:
            return datetime_to_ns(datetime.fromisoformat(_EXCESS_FRACTION.sub(r"\1", text)))
        except ValueError:
            raise PayloadError(f"timestamp {_abbrev(raw)!r} is neither epoch time nor ISO 8601") from None
    if isinstance(raw, (int, float)):
        return _epoch_to_ns(float(raw), exact=raw if isinstance(raw, int) else None)
    raise PayloadError(f"timestamp {_abbrev(repr(raw))} is a {type(raw).__name__}, not a number or string")


def _epoch_to_ns(x: float, *, exact: int | None) -> int:
    if not math.isfinite(x) or x < 0:
        raise PayloadError(f"timestamp {x} is not a time after 1970")
    if x >= _NS:
        return exact if exact is not None else round(x)
    us_per_unit = 1 if x >= _US else 1_000 if x >= _MS else 1_000_000
    if exact is not None:
        return exact * us_per_unit * 1000
    # A float of epoch time carries no more than microseconds: round there, not at ns.
    return round(x * us_per_unit) * 1000


def decode_message(
    raw: bytes, fields: Mapping[str, Sequence[str]], *, ts_path: Sequence[str] | None, receive_ns: int,
    limits: Limits = DEFAULT_LIMITS,
) -> Decoded:
    """Values of `fields` (signal -> path parts) in one JSON object. A malformed message raises
    PayloadError; a bad single field lands in `errors` and the other fields still count."""
    return _decode_doc(parse_json(raw, limits), fields, ts_path, receive_ns, limits, lookup)


Format = Literal["auto", "json", "kv", "number"]
VALUE_FIELD = "value"   # the field a bare value is read as
_KV_SEPARATORS = re.compile(r"[,;&\s]+")
_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def decode_payload(
    raw: bytes, fields: Mapping[str, Sequence[str]], *, ts_path: Sequence[str] | None, receive_ns: int,
    limits: Limits = DEFAULT_LIMITS, fmt: Format = "auto",
) -> list[Decoded]:
    """Every reading in one message, in order (module docstring for the forms). A malformed
    message raises PayloadError and yields nothing."""
    def decode(doc: Any, find: Any = lookup) -> Decoded:
        return _decode_doc(doc, fields, ts_path, receive_ns, limits, find)

    if fmt == "kv":
        return [decode(parse_kv(raw), _lookup_flat)]
    if fmt == "number":
        return [decode({VALUE_FIELD: _bare_number(raw)})]
    try:
        doc = parse_json_value(raw, limits)
    except PayloadError as err:
        if fmt == "auto" and b"=" in raw:
            return [decode(parse_kv(raw), _lookup_flat)]
        if fmt == "auto":
            raise PayloadError(f"neither JSON nor key=value text ({err})") from None
        raise
    if isinstance(doc, dict):
        return [decode(doc)]
    if isinstance(doc, list):
        if len(doc) > limits.max_batch_readings:
            # One message of tiny readings could otherwise cost millions of samples at once.
            raise PayloadError(f"batch of {len(doc)} readings exceeds max_batch_readings {limits.max_batch_readings}")
        bad = next((i for i, d in enumerate(doc) if not isinstance(d, dict)), None)
        if bad is not None:
            raise PayloadError(f"batch element {bad} is {_kind(doc[bad])}, expected an object (one reading)")
        readings = [decode(d) for d in doc]
        untimed = [i for i, r in enumerate(readings) if not r.ts_from_payload]
        if len(readings) > 1 and untimed:
            # They would all get the receive time, and the store keeps one row per timestamp.
            raise PayloadError(f"batch reading {untimed[0]} has no timestamp: the readings of a batch "
                               "need their own, or they overwrite each other at the receive time")
        return readings
    if doc is None:
        raise PayloadError("payload is JSON null: no reading")
    return [decode({VALUE_FIELD: doc})]


def _kind(x: Any) -> str:
    return "null" if x is None else f"a {type(x).__name__}"


def parse_kv(raw: bytes) -> dict[str, Any]:
    """`a=1,b=x` -> {"a": 1, "b": "x"}: flat keys, typed values."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadError(f"key=value text is not UTF-8: {err}") from None
    doc: dict[str, Any] = {}
    for pair in _KV_SEPARATORS.split(text.strip()):
        if not pair:
            continue
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise PayloadError(f"{_abbrev(pair)!r} is not key=value")
        if key in doc:
            raise PayloadError(f"key {_abbrev(key)!r} appears twice")
        doc[key] = _typed(value)
    if not doc:
        raise PayloadError("empty key=value text")
    return doc


def _typed(text: str) -> Any:
    if _INT.fullmatch(text):
        try:
            return int(text)
        except ValueError:      # more digits than Python parses: kept as (too long) text
            return text
    if _FLOAT.fullmatch(text):
        return float(text)
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    return text


def _bare_number(raw: bytes) -> int | float:
    text = raw.strip().decode("ascii", errors="replace")
    value = _typed(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PayloadError(f"{_abbrev(text)!r} is not a number")
    return value


def _lookup_flat(doc: Mapping[str, Any], parts: Sequence[str]) -> Any:
    return doc.get(".".join(parts), _MISSING)


def _decode_doc(doc: Any, fields: Mapping[str, Sequence[str]], ts_path: Sequence[str] | None, receive_ns: int,
                limits: Limits, find: Any) -> Decoded:
    out = Decoded(ts_ns=receive_ns, ts_from_payload=False)
    if ts_path:
        ts_raw = find(doc, ts_path)
        if ts_raw is not _MISSING:
            try:
                out.ts_ns, out.ts_from_payload = parse_timestamp(ts_raw), True
            except PayloadError as err:
                out.errors["ts"] = err
    for name, parts in fields.items():
        value = find(doc, parts)
        if value is _MISSING:
            continue  # partial messages are normal: a device reports what changed
        try:
            out.values[name] = as_value(value, ".".join(parts), limits)
        except PayloadError as err:
            out.errors[name] = err
    return out
