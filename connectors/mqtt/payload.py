"""Pure decoding of JSON telemetry: values by field path and the message timestamp.

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
from typing import Any, Mapping, Sequence

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


DEFAULT_LIMITS = Limits()
_INT64 = (-(2**63), 2**63 - 1)
_MISSING = object()


def parse_json(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Mapping[str, Any]:
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise PayloadError(f"JSON nested deeper than {limits.max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as err:  # ValueError: also an int of > 4300 digits
        raise PayloadError(f"not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise PayloadError(f"expected a JSON object, got {type(doc).__name__}")
    # Depth cannot exceed the number of opening brackets: the walk is needed only past that.
    if raw.count(b"[") + raw.count(b"{") > limits.max_depth and _deeper_than(doc, limits.max_depth):
        raise PayloadError(f"JSON nested deeper than {limits.max_depth} levels")
    return doc


def _deeper_than(doc: Any, max_depth: int) -> bool:
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
    """Values of `fields` (signal -> path parts) in one message. A malformed message raises
    PayloadError; a bad single field lands in `errors` and the other fields still count."""
    doc = parse_json(raw, limits)
    out = Decoded(ts_ns=receive_ns, ts_from_payload=False)
    if ts_path:
        ts_raw = lookup(doc, ts_path)
        if ts_raw is not _MISSING:
            try:
                out.ts_ns, out.ts_from_payload = parse_timestamp(ts_raw), True
            except PayloadError as err:
                out.errors["ts"] = err
    for name, parts in fields.items():
        value = lookup(doc, parts)
        if value is _MISSING:
            continue  # partial messages are normal: a device reports what changed
        try:
            out.values[name] = as_value(value, ".".join(parts), limits)
        except PayloadError as err:
            out.errors[name] = err
    return out
