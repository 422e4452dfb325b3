import pytest
from pydantic import ValidationError

from connectors.modbus.config import ModbusAddress
from connectors.modbus.planner import Field, plan
from edge.errors import ConfigError


def f(key, offset, type_="uint16", table="holding", **kw):
    return Field(key, ModbusAddress(table=table, offset=offset, type=type_, **kw))


def spans(requests):
    return [(r.table, r.start, r.count, [x.key for x in r.fields]) for r in requests]


def test_simulator_map_is_one_read():
    fields = [f("state", 0), f("count_total", 1), f("power_kw", 4, "float32"),
              f("energy_kwh", 6, "uint32"), f("alarm", 9)]
    assert spans(plan(fields)) == [("holding", 0, 10, ["state", "count_total", "power_kw", "energy_kwh", "alarm"])]


@pytest.mark.parametrize("gap,expected_reads", [(0, 2), (4, 2), (5, 1), (50, 1)])
def test_gap_decides_merge(gap, expected_reads):
    # a occupies 0-1, b starts at 7: a hole of 5 registers
    reads = plan([f("a", 0, "uint32"), f("b", 7)], max_gap=gap)
    assert len(reads) == expected_reads
    assert sorted(k for r in reads for k in (x.key for x in r.fields)) == ["a", "b"]


def test_tables_are_planned_separately_and_unsorted_input_is_fine():
    fields = [f("i2", 3, table="input"), f("h", 0), f("c", 5, "bool", table="coil"), f("i1", 0, table="input")]
    assert spans(plan(fields)) == [
        ("coil", 5, 1, ["c"]), ("holding", 0, 1, ["h"]), ("input", 0, 4, ["i1", "i2"])]


def test_limit_splits_without_cutting_a_value():
    fields = [f(f"r{i}", i * 2, "float32") for i in range(100)]  # 200 registers, contiguous
    reads = plan(fields, max_registers=125)
    assert all(r.count <= 125 for r in reads)
    assert [r.start for r in reads] == [0, 124]   # 62 float32 fit into 124 registers
    covered = [x.key for r in reads for x in r.fields]
    assert covered == [f"r{i}" for i in range(100)]


def test_overlapping_fields_share_a_read_and_slice_correctly():
    whole, low = f("whole", 10, "uint32"), f("low", 11)
    (req,) = plan([whole, low])
    assert (req.start, req.count) == (10, 2)
    assert req.slice_for(low, [7, 8]) == [8]
    assert req.slice_for(whole, [7, 8]) == [7, 8]


def test_value_larger_than_limit_is_config_error():
    with pytest.raises(ConfigError, match="exceeds"):
        plan([f("serial", 0, "ascii", length=20)], max_registers=10)


@pytest.mark.parametrize("raw,message", [
    ({"table": "coil", "offset": 0, "type": "uint16"}, "single bits"),
    ({"table": "holding", "offset": 0, "type": "bool"}, "registers are 16 bits"),
    ({"table": "holding", "offset": 0, "type": "ascii"}, "needs length"),
    ({"table": "holding", "offset": 65535, "type": "uint32"}, "past address 65535"),
    ({"table": "holding", "offset": 0, "byte_order": "ABDC"}, "byte_order"),
    ({"table": "holding", "offset": 0, "colour": "red"}, "Extra inputs"),
])
def test_address_validation(raw, message):
    with pytest.raises(ValidationError, match=message):
        ModbusAddress.model_validate(raw)
