"""Pure decoding of register words into values. Failures raise PayloadError (never a bare
struct.error or UnicodeDecodeError), so the source can count them and mark the sample bad."""
from __future__ import annotations

import math
import struct

from connectors.modbus.config import REGISTERS_OF, TEXT_TYPES, ModbusAddress
from edge.errors import PayloadError
from edge.model import Value

_STRUCT: dict[str, str] = {
    "uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i", "uint64": ">Q", "int64": ">q",
    "float32": ">f", "float64": ">d",
}


def to_bytes(registers: list[int], byte_order: str) -> bytes:
    """Register words as the big-endian (ABCD...) byte string the value was meant to be."""
    for r in registers:
        if not 0 <= r <= 0xFFFF:
            raise PayloadError(f"register value {r!r} is not a 16-bit word")
    words = list(registers)
    if byte_order in ("CDAB", "DCBA"):
        words.reverse()
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if byte_order in ("BADC", "DCBA"):
        raw = bytes(b for i in range(0, len(raw), 2) for b in (raw[i + 1], raw[i]))
    return raw


def decode(registers: list[int], address: ModbusAddress) -> Value:
    """The value `address` describes, from exactly the registers (or bits) it occupies."""
    dtype = address.type
    if len(registers) != address.count:
        raise PayloadError(f"{dtype} at {address.table} {address.offset} needs {address.count} "
                           f"registers, got {len(registers)}")
    if dtype == "bool":
        return bool(registers[0])
    if dtype == "bit":
        assert address.bit is not None
        (word,) = struct.unpack(">H", to_bytes(registers, address.byte_order))
        return bool(word >> address.bit & 1)
    if dtype in TEXT_TYPES:
        # Strings are byte sequences in register order: only the byte swap applies.
        order = "BADC" if address.byte_order in ("BADC", "DCBA") else "ABCD"
        raw = to_bytes(registers, order)
        codec, kind = ("ascii", "non-ASCII") if dtype == "ascii" else ("utf-8", "not UTF-8:")
        try:
            text = raw.rstrip(b"\x00 ").decode(codec)
        except UnicodeDecodeError as err:
            raise PayloadError(f"{dtype} at {address.table} {address.offset}: {kind} byte "
                               f"{raw[err.start]:#04x} in {raw!r}") from None
        return text
    assert REGISTERS_OF[dtype] == len(registers)
    (value,) = struct.unpack(_STRUCT[dtype], to_bytes(registers, address.byte_order))
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"{dtype} at {address.table} {address.offset} is {value} "
                           f"(registers {[hex(r) for r in registers]}, byte order {address.byte_order})")
    return value
