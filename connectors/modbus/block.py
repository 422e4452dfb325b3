"""One planned read's answer -> the Samples of its fields, with the per-read work done once.

A poll of a typical device is one read of a block of registers holding a value per signal.
`BlockReader` is made once per planned read (ModbusSource caches it with the plan) and keeps
what does not change between polls: the signal names, their decoders and where each begins,
and, when the block allows it, ONE `struct.Struct` reading every value of the block in one call.

That one-call path takes the fields struct reads as sent (big-endian: 16-bit words in ABCD or
CDAB, which leave a single word alone, and 32/64-bit values in ABCD), in address order without
overlap. Anything else (a swapped byte order, a bit of a status word, text, overlapping
signals, bit tables) goes field by field through `decode.block_decoder`, as does a whole answer
holding a non-finite float, so that its error is the one `decode` raises. Signals with a role
that `SignalSpec.check` judges (state, counters, power, energy) go through `check`; any other
signal's value is kept as decoded, scaled, GOOD, which is what `check` returns for it
(tests/connectors/test_modbus_block.py holds the two paths equal, hypothesis over register
words, types, byte orders, overlaps, roles, scale and offset).
"""
from __future__ import annotations

import math
import struct
from functools import partial
from itertools import repeat
from typing import Mapping, Sequence

from connectors.modbus.config import BIT_TABLES, TEXT_TYPES
from connectors.modbus.decode import BlockDecoder, block_decoder
from connectors.modbus.planner import Field, Request
from connectors.reporting import PayloadErrorReporter
from edge.errors import PayloadError
from edge.model import Quality, Sample, SignalSpec

BAD_VALUE = ""  # value of a BAD sample: there is no reading, and "" cannot pass for one

# A Sample from a tuple of its five fields, all in C: what Sample(...) makes (a NamedTuple's
# __new__ is tuple.__new__ on its fields), without a Python frame per value. A poll's samples
# are `map(_as_sample, zip(...))` over the block's names and values.
_as_sample = partial(tuple.__new__, Sample)


# struct codes reading a value as sent, per type and the byte orders that leave it as sent.
_AS_SENT: dict[str, tuple[str, frozenset[str]]] = {
    "uint16": ("H", frozenset({"ABCD", "CDAB"})), "int16": ("h", frozenset({"ABCD", "CDAB"})),
    "uint32": ("I", frozenset({"ABCD"})), "int32": ("i", frozenset({"ABCD"})),
    "float32": ("f", frozenset({"ABCD"})),
    "uint64": ("Q", frozenset({"ABCD"})), "int64": ("q", frozenset({"ABCD"})),
    "float64": ("d", frozenset({"ABCD"})),
}
_FLOATS = frozenset({"float32", "float64"})
_NOT_SCALED = frozenset({"bool", "bit", *TEXT_TYPES})   # check keeps bools and text as sent


def block_struct(request: Request) -> struct.Struct | None:
    """A Struct unpacking every field of `request` from the answer's bytes in one call, or None
    when some field is not readable as sent (see the module docstring)."""
    if request.table in BIT_TABLES:
        return None
    fmt = [">"]
    at = request.start   # next register not yet covered
    for f in request.fields:
        a = f.address
        code = _AS_SENT.get(a.type)
        if code is None or a.byte_order not in code[1] or a.offset < at:
            return None
        if a.offset > at:
            fmt.append(f"{(a.offset - at) * 2}x")
        fmt.append(code[0])
        at = a.offset + a.count
    end = request.start + request.count
    if end > at:
        fmt.append(f"{(end - at) * 2}x")
    return struct.Struct("".join(fmt))


class BlockReader:
    """Samples from one planned read's answer: `registers` are the answer's words as bytes
    (big-endian, 2 per register) for holding/input reads, the 0/1 values for coils/inputs."""

    __slots__ = ("request", "_device_id", "_errors", "_fields", "_decoders", "_names", "_struct", "_floats",
                 "_scaled", "_checked")

    def __init__(self, device_id: str, request: Request, signals: Mapping[str, SignalSpec],
                 errors: PayloadErrorReporter):
        self.request = request
        self._device_id = device_id
        self._errors = errors
        self._fields: list[tuple[Field, str, SignalSpec, int]] = [
            (f, str(f.key), signals[str(f.key)], f.address.offset - request.start) for f in request.fields]
        self._decoders = [block_decoder(f.address) for f in request.fields]
        self._names = tuple(name for _, name, _, _ in self._fields)
        self._struct = block_struct(request)
        self._floats = tuple(i for i, (f, _, _, _) in enumerate(self._fields) if f.address.type in _FLOATS)
        # (index, scale, offset) of the numbers to scale, the indexes of the signals to check
        self._scaled = tuple((i, spec.scale, spec.offset) for i, (f, _, spec, _) in enumerate(self._fields)
                             if not spec.judged and f.address.type not in _NOT_SCALED
                             and (spec.scale != 1.0 or spec.offset != 0.0))
        self._checked = tuple(i for i, (_, _, spec, _) in enumerate(self._fields) if spec.judged)

    def samples(self, registers: bytes | Sequence[int], ts_ns: int) -> list[Sample]:
        unpack = self._struct
        if unpack is None or not isinstance(registers, (bytes, bytearray, memoryview)):
            return self.samples_by_field(words(registers), ts_ns)
        raws = unpack.unpack(registers)
        for i in self._floats:
            if not math.isfinite(raws[i]):   # decode's PayloadError names the registers
                return self.samples_by_field(words(registers), ts_ns)
        device_id, good = self._device_id, Quality.GOOD
        if not self._scaled and not self._checked:
            return list(map(_as_sample, zip(repeat(device_id), self._names, repeat(ts_ns), raws, repeat(good))))
        values = list(raws)
        for i, scale, offset in self._scaled:
            values[i] = values[i] * scale + offset
        if not self._checked:
            return list(map(_as_sample, zip(repeat(device_id), self._names, repeat(ts_ns), values, repeat(good))))
        qualities = [good] * len(values)
        for i in self._checked:
            f, name, spec, begin = self._fields[i]
            values[i], qualities[i], problem = spec.check(values[i])
            if problem is not None:
                self._errors.report(problem, signal=name,
                                    registers=list(words(registers[2 * begin:2 * (begin + f.address.count)])))
        return [Sample(device_id, name, ts_ns, value, quality)
                for name, value, quality in zip(self._names, values, qualities)]

    def samples_by_field(self, values: Sequence[int], ts_ns: int) -> list[Sample]:
        """The general path: each field decoded from the answer's values on its own."""
        return [self._sample(field, decoder, values, ts_ns)
                for field, decoder in zip(self._fields, self._decoders)]

    def _sample(self, field: tuple[Field, str, SignalSpec, int], decoder: BlockDecoder,
                values: Sequence[int], ts_ns: int) -> Sample:
        f, name, spec, begin = field
        try:
            raw = decoder(values, begin)
        except PayloadError as err:
            self._errors.report(err, signal=name, registers=list(values[begin:begin + f.address.count]))
            return Sample(self._device_id, name, ts_ns, BAD_VALUE, Quality.BAD)
        value, quality, problem = spec.check(raw)
        if problem is not None:   # wrong type or range for the signal's role: counted, not GOOD
            self._errors.report(problem, signal=name, registers=list(values[begin:begin + f.address.count]))
        return Sample(self._device_id, name, ts_ns, value, quality)


def words(registers: bytes | bytearray | memoryview | Sequence[int]) -> Sequence[int]:
    """The register words of an answer, from its bytes or as given."""
    if isinstance(registers, (bytes, bytearray, memoryview)):
        return struct.unpack(f">{len(registers) // 2}H", registers)
    return registers
