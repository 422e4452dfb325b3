"""OPC UA values, status codes and timestamps as Sample parts (pure; no session).

A Sample holds one number, bool or string. Every scalar built-in type maps onto one of those;
an array yields the element the signal names with `index:`, and is refused without one; a
structure (ExtensionObject) is refused. Integers are passed on as they are, however large: an
Int64/UInt64 beyond SQLite's int64 is caught by the same checks as any other source's
(edge.model.SignalSpec.check for counters, the store's sample_problem otherwise), counted
and not stored.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Literal

from asyncua import ua

from connectors.timeconv import datetime_to_ns
from edge.model import Quality, Value, now_ns

DateTimeMode = Literal["epoch_ns", "text"]

# Where a sample's timestamp came from, in the vocabulary of time_sources() (common to sources).
DEVICE, SERVER, GATEWAY = "device", "server", "gateway"


class Refused(ValueError):
    """A value this signal cannot carry (an array without index, a structure...)."""


def quality_of(status: ua.StatusCode | None) -> Quality:
    """The two top bits of an OPC UA status code: 00 good, 01 uncertain, 10/11 bad."""
    if status is None:
        return Quality.GOOD
    severity = (status.value >> 30) & 0b11
    return Quality.GOOD if severity == 0 else Quality.UNCERTAIN if severity == 1 else Quality.BAD


def status_name(status: ua.StatusCode | None) -> str:
    """The code's name (`UncertainLastUsableValue`); the hex value for a code asyncua lacks."""
    if status is None:
        return "Good"
    try:
        return status.name
    except (AttributeError, KeyError):
        return f"0x{status.value:08X}"


def scalar(raw: Any, *, index: int | None = None, datetimes: DateTimeMode = "epoch_ns") -> Value:
    """`raw` (a Variant's Python value) as a Sample value; Refused when it cannot be one."""
    if isinstance(raw, (list, tuple)):
        if index is None:
            raise Refused(f"the value is an array of {len(raw)}; name one element with "
                          f"`index:` in the signal's address")
        if index >= len(raw):
            raise Refused(f"index {index} is beyond the array's {len(raw)} elements")
        raw = raw[index]
    elif index is not None:
        raise Refused(f"`index: {index}` is set but the value is a scalar ({type(raw).__name__})")
    return _plain(raw, datetimes)


def _plain(raw: Any, datetimes: DateTimeMode) -> Value:
    if isinstance(raw, (bool, int, float, str)):
        return raw   # IntEnum values (enumerations) are ints and stay so
    if isinstance(raw, datetime):
        if datetimes == "text":
            aware = raw if raw.tzinfo is not None else raw.replace(tzinfo=timezone.utc)
            return aware.isoformat()
        return datetime_to_ns(raw)
    if isinstance(raw, ua.LocalizedText):
        return raw.Text or ""
    if isinstance(raw, ua.QualifiedName):
        return f"{raw.NamespaceIndex}:{raw.Name}"
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).hex()      # ByteString: hex keeps every byte, and is printable
    if isinstance(raw, ua.StatusCode):
        return status_name(raw)
    if isinstance(raw, (ua.NodeId, ua.ExpandedNodeId)):
        return raw.to_string()
    if isinstance(raw, uuid.UUID):
        return str(raw)
    if isinstance(raw, ua.XmlElement):
        return raw.Value or ""
    raise Refused(f"a {type(raw).__name__} is a structure, not a scalar value")


def stamp(dv: ua.DataValue | None) -> tuple[int, str]:
    """The sample time: SourceTimestamp, else ServerTimestamp, else the gateway's clock; and
    which of the three it was (DEVICE, SERVER, GATEWAY)."""
    if dv is not None:
        if dv.SourceTimestamp is not None:
            return datetime_to_ns(dv.SourceTimestamp), DEVICE
        if dv.ServerTimestamp is not None:
            return datetime_to_ns(dv.ServerTimestamp), SERVER
    return now_ns(), GATEWAY
