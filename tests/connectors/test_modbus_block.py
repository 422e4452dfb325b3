"""BlockReader (connectors/modbus/block.py): a read's answer -> Samples, through one Struct for
the whole block where it can, must give what decoding each field on its own and checking it
with its SignalSpec gives: the same values, qualities, and the same payload errors counted."""
from __future__ import annotations

import logging
import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.modbus.block import BlockReader, block_struct
from connectors.modbus.config import REGISTERS_OF, ModbusAddress
from connectors.modbus.decode import decode
from connectors.modbus.planner import Field, plan
from connectors.reporting import PayloadErrorReporter
from edge.errors import PayloadError
from edge.model import Quality, Role, Sample, SignalSpec

NUMBER_TYPES = ["uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"]
ORDERS = ["ABCD", "BADC", "CDAB", "DCBA"]
# every role name, so the signals check() judges are among them, and plain names
NAMES = [r.value for r in Role] + ["speed", "temp", "status"]


def reference(device_id: str, fields: list[tuple[SignalSpec, ModbusAddress]], start: int,
              registers: list[int], ts_ns: int) -> tuple[list[Sample], int]:
    """Each field decoded from its own registers and checked by its spec; errors counted."""
    out, errors = [], 0
    for spec, a in fields:
        mine = registers[a.offset - start:a.offset - start + a.count]
        try:
            raw = decode(mine, a)
        except PayloadError:
            errors += 1
            out.append(Sample(device_id, spec.name, ts_ns, "", Quality.BAD))
            continue
        value, quality, problem = spec.check(raw)
        errors += problem is not None
        out.append(Sample(device_id, spec.name, ts_ns, value, quality))
    return out, errors


def same(a: list[Sample], b: list[Sample]) -> bool:
    def key(s: Sample) -> tuple[Any, ...]:
        v = s.value
        nan = isinstance(v, float) and math.isnan(v)
        return (s.device_id, s.signal, s.ts_ns, type(v), "nan" if nan else v, s.quality)
    return [key(s) for s in a] == [key(s) for s in b]


@st.composite
def blocks(draw: st.DrawFn, as_sent: bool = False) -> tuple[list[tuple[SignalSpec, ModbusAddress]], list[int]]:
    """Fields of a block and its register words; `as_sent`: only fields the one Struct reads."""
    n = draw(st.integers(1, 8))
    fields = []
    at = draw(st.integers(0, 3))
    used = set()
    for _ in range(n):
        kind = draw(st.sampled_from(NUMBER_TYPES if as_sent else NUMBER_TYPES * 4 + ["bit", "ascii", "string"]))
        kw: dict[str, Any] = {}
        if kind == "bit":
            kw["bit"] = draw(st.integers(0, 15))
        if kind in ("ascii", "string"):
            kw["length"] = draw(st.integers(1, 3))
        # mostly in order without overlap (the one-Struct path), sometimes overlapping
        at = max(0, at + draw(st.sampled_from([0, 0, 1, 3] if as_sent else [0, 0, 0, 0, 1, 3, -1])))
        order = "ABCD" if as_sent else draw(st.sampled_from(ORDERS + ["ABCD"] * 8))
        a = ModbusAddress(table="holding", offset=at, type=kind, byte_order=order, **kw)
        at += a.count
        name = draw(st.sampled_from(NAMES).filter(lambda x: x not in used))
        used.add(name)
        scale = draw(st.sampled_from([1.0, 1.0, 0.1, -2.0, 1e300]))
        offset = draw(st.sampled_from([0.0, 0.0, 5.0, -0.5]))
        states = draw(st.sampled_from([{}, {"1": "running", "2": "idle"}]))
        fields.append((SignalSpec(name, address=a, scale=scale, offset=offset, states=states), a))
    end = max(a.offset + a.count for _, a in fields)
    word = st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 1, 2, 0x7F80, 0x7FC0, 0xFF80, 0x8000, 0xFFFF]),
                     st.sampled_from([0x4142, 0x2020, 0x00C3, 0xE282]))
    registers = draw(st.lists(word, min_size=end, max_size=end))
    return fields, registers


def readers(fields: list[tuple[SignalSpec, ModbusAddress]]) -> list[tuple[BlockReader, PayloadErrorReporter]]:
    """One BlockReader per planned read of `fields` (one read covering them all, as a device's
    coalesced poll is), each with its own reporter."""
    specs = {spec.name: spec for spec, _ in fields}
    requests = plan([Field(spec.name, a) for spec, a in fields], max_gap=125)
    out = []
    for req in requests:
        errors = PayloadErrorReporter(logging.getLogger("test.block"), "dev")
        out.append((BlockReader("dev", req, specs, errors), errors))
    return out


@settings(max_examples=400, deadline=None)
@given(st.one_of(blocks(), blocks(as_sent=True)))
def test_one_struct_per_block_equals_decoding_each_field(block):
    fields, registers = block
    ts = 1_700_000_000_000_000_000
    for reader, errors in readers(fields):
        req = reader.request
        mine = [(spec, a) for spec, a in fields if any(f.key == spec.name for f in req.fields)]
        mine.sort(key=lambda x: (x[1].offset, x[1].count))
        words = registers[req.start:req.start + req.count]
        expected, n_errors = reference("dev", mine, req.start, registers[req.start:], ts)
        got = reader.samples(struct.pack(f">{len(words)}H", *words), ts)
        assert same(got, expected), (got, expected)
        assert errors.count == n_errors
        # the general path, fed the words (as from pymodbus), agrees too
        again = PayloadErrorReporter(logging.getLogger("test.block"), "dev")
        general = BlockReader("dev", req, {s.name: s for s, _ in fields}, again)
        assert same(general.samples(words, ts), expected)
        assert again.count == n_errors


def test_a_device_block_of_words_and_floats_is_one_struct():
    fields = [Field(f"r{i}", ModbusAddress(table="holding", offset=i)) for i in range(10)]
    fields += [Field("f", ModbusAddress(table="holding", offset=12, type="float32")),
               Field("q", ModbusAddress(table="holding", offset=14, type="int64"))]
    [req] = plan(fields)
    s = block_struct(req)
    assert s is not None and s.size == 2 * req.count
    assert s.format == ">HHHHHHHHHH4xfq"


@pytest.mark.parametrize("address", [
    {"type": "uint32", "byte_order": "CDAB"}, {"type": "int16", "byte_order": "BADC"},
    {"type": "bit", "bit": 3}, {"type": "ascii", "length": 2},
])
def test_values_struct_cannot_read_as_sent_go_field_by_field(address):
    fields = [Field("a", ModbusAddress(table="holding", offset=0)),
              Field("b", ModbusAddress(table="holding", offset=1, **address))]
    [req] = plan(fields)
    assert block_struct(req) is None


def test_overlapping_signals_go_field_by_field():
    fields = [Field("wide", ModbusAddress(table="holding", offset=0, type="uint32")),
              Field("low", ModbusAddress(table="holding", offset=1))]
    [req] = plan(fields)
    assert block_struct(req) is None
    specs = {"wide": SignalSpec("wide"), "low": SignalSpec("low")}
    reader = BlockReader("dev", req, specs, PayloadErrorReporter(logging.getLogger("t"), "dev"))
    assert [s.value for s in reader.samples(struct.pack(">HH", 1, 2), 0)] == [0x10002, 2]


def test_a_non_finite_float_is_bad_and_counted_as_decode_reports_it():
    fields = [Field("temp", ModbusAddress(table="holding", offset=0, type="float32")),
              Field("speed", ModbusAddress(table="holding", offset=2))]
    [req] = plan(fields)
    errors = PayloadErrorReporter(logging.getLogger("t"), "dev")
    reader = BlockReader("dev", req, {"temp": SignalSpec("temp"), "speed": SignalSpec("speed")}, errors)
    temp, speed = reader.samples(struct.pack(">HHH", 0x7FC0, 0, 42), 0)
    assert temp.quality is Quality.BAD and errors.count == 1
    assert speed.value == 42 and speed.quality is Quality.GOOD
    assert REGISTERS_OF["float32"] == 2


def test_one_struct_path_builds_real_samples():
    """The one-Struct path builds its Samples from tuples in C (block._as_sample): they must be
    Samples as the constructor makes them (type, fields, defaults, _replace), scaled or not."""
    signals = {"a": SignalSpec("a"), "b": SignalSpec("b", scale=0.5, offset=1.0)}
    fields = [Field("a", ModbusAddress(table="holding", offset=0)),
              Field("b", ModbusAddress(table="holding", offset=1, type="int16"))]
    (req,) = plan(fields, max_gap=0, max_registers=125)
    reader = BlockReader("dev", req, signals, PayloadErrorReporter(logging.getLogger("t"), "dev"))
    out = reader.samples(struct.pack(">HH", 7, 0xFFFE), 42)
    assert out == [Sample("dev", "a", 42, 7), Sample("dev", "b", 42, 0.0)]
    assert all(type(s) is Sample and s.quality is Quality.GOOD for s in out)
    assert out[1]._replace(value=3) == Sample("dev", "b", 42, 3, Quality.GOOD)
    assert out[0]._asdict()["signal"] == "a"
