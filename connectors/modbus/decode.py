"""Pure decoding of register words into values. Failures raise PayloadError (never a bare
struct.error or UnicodeDecodeError), so the source can count them and mark the sample bad."""
from __future__ import annotations

import math
import struct
from typing import Callable, Sequence

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


BlockDecoder = Callable[[Sequence[int], int], Value]
"""Decodes one value from a read's registers, starting at an index into them."""

_PAIR = struct.Struct(">HH")
_FAST_PAIRS: dict[tuple[str, str], struct.Struct] = {
    ("uint32", "ABCD"): struct.Struct(">I"), ("int32", "ABCD"): struct.Struct(">i"),
    ("float32", "ABCD"): struct.Struct(">f"),
}


def block_decoder(address: ModbusAddress) -> BlockDecoder:
    """`decode` for one value inside a read's registers, without slicing them out: the common
    types (16-bit words without a byte swap, bits, 32-bit values in ABCD order) read in place, any other goes
    through `decode`. The same value and the same PayloadError either way (the fast path falls
    back to `decode` for anything it would not return as-is)."""
    count, dtype = address.count, address.type
    word_order_only = address.byte_order in ("ABCD", "CDAB")   # a single word reads as sent

    def general(regs: Sequence[int], i: int) -> Value:
        return decode(list(regs[i:i + count]), address)

    if dtype == "uint16" and word_order_only:
        def uint16(regs: Sequence[int], i: int) -> Value:
            r = regs[i]
            return r if 0 <= r <= 0xFFFF else general(regs, i)
        return uint16
    if dtype == "int16" and word_order_only:
        def int16(regs: Sequence[int], i: int) -> Value:
            r = regs[i]
            if not 0 <= r <= 0xFFFF:
                return general(regs, i)
            return r - 0x10000 if r & 0x8000 else r
        return int16
    if dtype == "bool":
        return lambda regs, i: bool(regs[i])
    fast = _FAST_PAIRS.get((dtype, address.byte_order))
    if fast is not None:
        unpack, pack = fast.unpack, _PAIR.pack

        def pair(regs: Sequence[int], i: int) -> Value:
            try:
                (value,) = unpack(pack(regs[i], regs[i + 1]))
            except (struct.error, IndexError):
                return general(regs, i)
            if isinstance(value, float) and not math.isfinite(value):
                return general(regs, i)   # raises the PayloadError naming the registers
            return value
        return pair
    return general
