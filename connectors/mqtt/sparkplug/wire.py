"""The protobuf wire format, as much of it as Sparkplug B needs: varints, fixed32/64 and
length-delimited fields, read and written.

Hand-written so that decoding arbitrary bytes from a broker depends on nothing but this file,
and so every way bytes can be wrong ends in one error type (`WireError`), never an IndexError
or a struct.error from deep inside. Zigzag (sint32/sint64) is not used by Sparkplug B's proto.
"""
from __future__ import annotations

import struct
from typing import Iterator

from edge.errors import PayloadError

VARINT, FIXED64, LENGTH, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5
_MAX_VARINT_BYTES = 10
_MASK64 = (1 << 64) - 1
# A message nests this deep at most (Payload > Metric > DataSet/Template > ...): deeper input is
# refused rather than recursed into.
MAX_DEPTH = 16

Field = tuple[int, int, int | bytes]  # field number, wire type, value (int, or bytes for LENGTH)


class WireError(PayloadError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    size = len(buf)
    if pos >= size:
        raise WireError(f"varint cut off at byte {pos}")
    b = buf[pos]
    if b < 0x80:        # field keys, small values: one byte, the common case by far
        return b, pos + 1
    result, shift, i = b & 0x7F, 7, pos + 1
    end = min(size, pos + _MAX_VARINT_BYTES)
    while i < end:
        b = buf[i]
        result |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return result & _MASK64, i
        shift += 7
    if i >= size and i - pos < _MAX_VARINT_BYTES:
        raise WireError(f"varint cut off at byte {i}")
    raise WireError(f"varint longer than {_MAX_VARINT_BYTES} bytes at byte {pos}")


def fields(buf: bytes) -> Iterator[Field]:
    """Every field of one message, in wire order. Fixed32/64 come back as unsigned ints."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire_type == FIXED64:
            value, pos = _fixed(buf, pos, 8), pos + 8
        elif wire_type == FIXED32:
            value, pos = _fixed(buf, pos, 4), pos + 4
        elif wire_type == LENGTH:
            size, pos = read_varint(buf, pos)
            if size > end - pos:
                raise WireError(f"field {number}: length {size} runs past the end ({end - pos} bytes left)")
            value, pos = buf[pos:pos + size], pos + size
        else:   # groups are deprecated and absent from Sparkplug B; 6 and 7 do not exist
            raise WireError(f"field {number}: unsupported wire type {wire_type}")
        yield number, wire_type, value


def _fixed(buf: bytes, pos: int, size: int) -> int:
    if pos + size > len(buf):
        raise WireError(f"fixed{size * 8} cut off at byte {pos}")
    return int.from_bytes(buf[pos:pos + size], "little")


def as_float(bits: int) -> float:
    return float(struct.unpack("<f", bits.to_bytes(4, "little"))[0])


def as_double(bits: int) -> float:
    return float(struct.unpack("<d", bits.to_bytes(8, "little"))[0])


def signed(value: int, bits: int) -> int:
    """Two's complement: how Sparkplug carries negative Int8..Int64 in its unsigned fields."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# --- writing (the NCMD we send; test payloads) ------------------------------------------------

def varint(value: int) -> bytes:
    value &= _MASK64
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def varint_field(number: int, value: int) -> bytes:
    return key(number, VARINT) + varint(value)


def bytes_field(number: int, value: bytes) -> bytes:
    return key(number, LENGTH) + varint(len(value)) + value


def double_field(number: int, value: float) -> bytes:
    return key(number, FIXED64) + struct.pack("<d", value)


def float_field(number: int, value: float) -> bytes:
    return key(number, FIXED32) + struct.pack("<f", value)
