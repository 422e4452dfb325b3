"""Sparkplug B payloads (sparkplug_b.proto beside this file) decoded into plain dataclasses, and
the few we send (a rebirth NCMD) encoded.

What a metric's value becomes:
- Int8/16/32/64: a signed int. Sparkplug carries them in unsigned fields as two's complement;
  encoders differ in whether an Int8 is sign-extended to 32 bits (Eclipse Tahu's JS does) or
  not, and both are read right;
- UInt8..UInt64: an unsigned int; Float, Double: a float; Boolean: a bool;
- String, Text, UUID: a str;
- DateTime: an int, epoch milliseconds (as on the wire);
- DataSet, Bytes, File, Template, PropertySet(List): not a reading a signal can hold, so
  `value` is None and `unsupported` names the type (the metric is still decoded, its name and
  alias still count for the alias table).
`is_null` metrics have value None. Unknown fields (extensions) are skipped, as protobuf does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from . import wire
from .wire import WireError

DATATYPES = {
    0: "Unknown", 1: "Int8", 2: "Int16", 3: "Int32", 4: "Int64", 5: "UInt8", 6: "UInt16",
    7: "UInt32", 8: "UInt64", 9: "Float", 10: "Double", 11: "Boolean", 12: "String",
    13: "DateTime", 14: "Text", 15: "UUID", 16: "DataSet", 17: "Bytes", 18: "File",
    19: "Template", 20: "PropertySet", 21: "PropertySetList",
}
BOOLEAN, STRING, INT64, DOUBLE = 11, 12, 4, 10
_SIGNED_BITS = {1: 8, 2: 16, 3: 32, 4: 64}
_TEXT_TYPES = {12, 14, 15}
# The metric value fields of the proto's oneof, by field number.
_INT, _LONG, _FLOAT, _DOUBLE, _BOOL, _STRING, _BYTES = 10, 11, 12, 13, 14, 15, 16
_OTHER_VALUES = {16, 17, 18, 19}  # bytes, dataset, template, extension
MAX_METRICS = 100_000

Value = int | float | bool | str | None


class SparkplugError(WireError):
    """Well-formed protobuf, but not a Sparkplug B payload we can use."""


@dataclass
class Metric:
    name: str | None = None
    alias: int | None = None
    timestamp_ms: int | None = None
    datatype: int | None = None
    value: Value = None
    is_null: bool = False
    is_historical: bool = False
    is_transient: bool = False
    unsupported: str | None = None   # the datatype, when its value is not a plain reading

    @property
    def type_name(self) -> str:
        return DATATYPES.get(self.datatype, f"type {self.datatype}") if self.datatype is not None else "none"


@dataclass
class Payload:
    timestamp_ms: int | None = None
    seq: int | None = None
    uuid: str | None = None
    metrics: list[Metric] = field(default_factory=list)
    has_body: bool = False


def decode(raw: bytes, *, max_metrics: int = MAX_METRICS) -> Payload:
    """`raw` as a Payload; WireError (a PayloadError) for anything malformed, never another error."""
    out = Payload()
    for number, wire_type, value in wire.fields(bytes(raw)):
        if number == 1:
            out.timestamp_ms = _int(value, wire_type, "payload timestamp")
        elif number == 2:
            if len(out.metrics) >= max_metrics:
                raise SparkplugError(f"more than {max_metrics} metrics in one payload")
            out.metrics.append(_metric(_bytes(value, wire_type, "metric")))
        elif number == 3:
            out.seq = _int(value, wire_type, "seq")
        elif number == 4:
            out.uuid = _text(_bytes(value, wire_type, "uuid"), "uuid")
        elif number == 5:
            _bytes(value, wire_type, "body")
            out.has_body = True
    return out


def _metric(raw: bytes) -> Metric:
    m = Metric()
    raw_value: tuple[int, int | bytes] | None = None   # (field number, value)
    for number, wire_type, value in wire.fields(raw):
        if number == 1:
            m.name = _text(_bytes(value, wire_type, "metric name"), "metric name")
        elif number == 2:
            m.alias = _int(value, wire_type, "alias")
        elif number == 3:
            m.timestamp_ms = _int(value, wire_type, "metric timestamp")
        elif number == 4:
            m.datatype = _int(value, wire_type, "datatype") & 0xFFFFFFFF
        elif number == 5:
            m.is_historical = bool(_int(value, wire_type, "is_historical"))
        elif number == 6:
            m.is_transient = bool(_int(value, wire_type, "is_transient"))
        elif number == 7:
            m.is_null = bool(_int(value, wire_type, "is_null"))
        elif number in (8, 9):
            _bytes(value, wire_type, "metadata/properties")
        elif _INT <= number <= 19:
            _check_wire(number, wire_type)
            raw_value = (number, value)
    _set_value(m, raw_value)
    return m


_WIRE_OF_VALUE = {_INT: wire.VARINT, _LONG: wire.VARINT, _FLOAT: wire.FIXED32, _DOUBLE: wire.FIXED64,
                  _BOOL: wire.VARINT, _STRING: wire.LENGTH, 16: wire.LENGTH, 17: wire.LENGTH,
                  18: wire.LENGTH, 19: wire.LENGTH}


def _check_wire(number: int, wire_type: int) -> None:
    if _WIRE_OF_VALUE[number] != wire_type:
        raise WireError(f"metric value field {number}: wire type {wire_type}, "
                        f"expected {_WIRE_OF_VALUE[number]}")


def _set_value(m: Metric, raw_value: tuple[int, int | bytes] | None) -> None:
    dt = m.datatype
    if dt in (16, 17, 18, 19, 20, 21) or (raw_value is not None and raw_value[0] in _OTHER_VALUES):
        m.unsupported = m.type_name
        return
    if m.is_null or raw_value is None:
        return
    number, value = raw_value
    if number == _STRING:
        assert isinstance(value, bytes)
        m.value = _text(value, f"metric {m.name or m.alias} string value")
    elif number == _FLOAT:
        assert isinstance(value, int)
        m.value = wire.as_float(value)
    elif number == _DOUBLE:
        assert isinstance(value, int)
        m.value = wire.as_double(value)
    elif number == _BOOL:
        m.value = bool(value)
    else:
        assert isinstance(value, int)
        m.value = _integer(value & 0xFFFFFFFF if number == _INT else value, dt)
    if dt is not None and not _fits(dt, m.value):
        raise SparkplugError(f"metric {m.name or m.alias}: a {type(m.value).__name__} value "
                             f"for datatype {m.type_name}")


def _integer(value: int, datatype: int | None) -> int:
    bits = _SIGNED_BITS.get(datatype or 0)
    if bits is None:
        return value
    if bits < 64 and value >= 1 << 31:   # sign-extended to 32 bits (Tahu's JS and C)
        return wire.signed(value, 32)
    return wire.signed(value, bits) if value < 1 << bits else wire.signed(value, 64)


def _fits(datatype: int, value: Value) -> bool:
    if datatype in _TEXT_TYPES:
        return isinstance(value, str)
    if datatype == BOOLEAN:
        return isinstance(value, bool)
    if datatype in (9, 10):
        return isinstance(value, float)
    if 1 <= datatype <= 8 or datatype == 13:
        return isinstance(value, int) and not isinstance(value, bool)
    return True   # Unknown (0) or a type from a later revision: take the value as sent


def _int(value: int | bytes, wire_type: int, what: str) -> int:
    if wire_type != wire.VARINT or not isinstance(value, int):
        raise WireError(f"{what}: wire type {wire_type}, expected a varint")
    return value


def _bytes(value: int | bytes, wire_type: int, what: str) -> bytes:
    if wire_type != wire.LENGTH or not isinstance(value, bytes):
        raise WireError(f"{what}: wire type {wire_type}, expected length-delimited")
    return value


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as err:
        raise WireError(f"{what}: not UTF-8 ({err.reason} at byte {err.start})") from None


# --- encoding -------------------------------------------------------------------------------

def encode(payload: Payload) -> bytes:
    parts = []
    if payload.timestamp_ms is not None:
        parts.append(wire.varint_field(1, payload.timestamp_ms))
    parts.extend(wire.bytes_field(2, _encode_metric(m)) for m in payload.metrics)
    if payload.seq is not None:
        parts.append(wire.varint_field(3, payload.seq))
    if payload.uuid is not None:
        parts.append(wire.bytes_field(4, payload.uuid.encode()))
    return b"".join(parts)


def _encode_metric(m: Metric) -> bytes:
    parts = []
    if m.name is not None:
        parts.append(wire.bytes_field(1, m.name.encode()))
    if m.alias is not None:
        parts.append(wire.varint_field(2, m.alias))
    if m.timestamp_ms is not None:
        parts.append(wire.varint_field(3, m.timestamp_ms))
    dt = m.datatype if m.datatype is not None else _datatype_of(m.value)
    parts.append(wire.varint_field(4, dt))
    if m.is_null or m.value is None:
        parts.append(wire.varint_field(7, 1))
    elif isinstance(m.value, bool):
        parts.append(wire.varint_field(_BOOL, int(m.value)))
    elif isinstance(m.value, str):
        parts.append(wire.bytes_field(_STRING, m.value.encode()))
    elif isinstance(m.value, float):
        parts.append(wire.float_field(_FLOAT, m.value) if dt == 9 else wire.double_field(_DOUBLE, m.value))
    elif dt in (1, 2, 3, 5, 6):
        parts.append(wire.varint_field(_INT, m.value & 0xFFFFFFFF))
    else:
        parts.append(wire.varint_field(_LONG, m.value))
    return b"".join(parts)


def _datatype_of(value: Value) -> int:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, str):
        return STRING
    if isinstance(value, float):
        return DOUBLE
    return INT64


def rebirth_request(timestamp_ms: int) -> bytes:
    """The NCMD payload that asks an edge node to publish its births again."""
    return encode(Payload(timestamp_ms=timestamp_ms, metrics=[
        Metric(name="Node Control/Rebirth", timestamp_ms=timestamp_ms, datatype=BOOLEAN, value=True)]))


def metric_names(metrics: Iterable[Metric]) -> list[str]:
    return [m.name for m in metrics if m.name]
