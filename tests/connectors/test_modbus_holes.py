"""A coalesced read across addresses the device does not have (issue 6): the device refuses the
whole block with exception 2; the source must split it, keep the split, and mark only the
signals that are really missing."""
import pytest

from connectors.modbus.source import ModbusSource
from edge.model import Quality
from tests.connectors.devices import SIM_STATES, device
from tests.connectors.servers import ModbusTestServer, free_port
from tests.connectors.test_modbus_source import float_regs

HOLES = [(2, 4), (10, 14)]  # the device has 0-1, 4-9, 14-199


@pytest.fixture
async def sparse_server():
    server = ModbusTestServer(free_port(), holes=HOLES)
    await server.start()
    yield server
    await server.stop()


def sparse_device(port: int):
    # max_gap 10 merges all six into one read 0+17, which crosses both holes
    return device("modbus", {"host": "127.0.0.1", "port": port, "poll_interval_s": 0.05, "timeout_s": 1.0,
                             "device_identification": False, "max_gap_registers": 10}, [
        {"name": "state", "address": {"table": "holding", "offset": 0}, "states": SIM_STATES},
        {"name": "count_total", "address": {"table": "holding", "offset": 1}},
        {"name": "power_kw", "address": {"table": "holding", "offset": 4, "type": "float32"}},
        {"name": "energy_kwh", "address": {"table": "holding", "offset": 6, "type": "uint32"}},
        {"name": "missing", "address": {"table": "holding", "offset": 12}},  # inside a hole
        {"name": "alarm", "address": {"table": "holding", "offset": 16}},
    ])


def crosses_hole(start: int, count: int) -> bool:
    return any(start < end and hole_start < start + count for hole_start, end in HOLES)


async def test_refused_block_is_split_and_only_the_missing_signal_is_bad(sparse_server):
    regs = sparse_server.holding
    regs[0], regs[1], regs[4:6], regs[6:8], regs[16] = 1, 42, float_regs(7.5), [0, 900], 1
    src = ModbusSource(sparse_device(sparse_server.port))
    events = []
    src.on_event = lambda kind, data: events.append((kind, data))
    assert [(r.start, r.count) for r in src.requests] == [(0, 17)]
    try:
        await src.connect()
        first_batch = await src.poll()
        first = {s.signal: s for s in first_batch}
        assert len(first_batch) == 6  # one sample per signal, the refused one included
        plan_after_first = [(r.table, r.start, r.count) for r in src.requests]
        sparse_server.requests.clear()
        second = {s.signal: s for s in await src.poll()}
        asked_second = list(sparse_server.requests)
        # the split plan survives a reconnect of the same source; the refused register is
        # asked for once more (alone), in case the device refused it while booting
        await src.close()
        await src.connect()
        sparse_server.requests.clear()
        third = {s.signal: s for s in await src.poll()}
        reprobed = list(sparse_server.requests)
        sparse_server.requests.clear()
        fourth = {s.signal: s for s in await src.poll()}
        asked_fourth = list(sparse_server.requests)
    finally:
        await src.close()

    for batch in (first, second, third, fourth):
        assert set(batch) == {"state", "count_total", "power_kw", "energy_kwh", "missing", "alarm"}
        assert {n for n, s in batch.items() if s.quality is Quality.BAD} == {"missing"}
        assert batch["state"].value == "running" and batch["count_total"].value == 42
        assert batch["power_kw"].value == 7.5 and batch["energy_kwh"].value == 900
        assert batch["alarm"].value == 1
    # the learned plan reads around the holes and never asks for the missing register again
    assert not any(crosses_hole(start, count) for _, start, count in plan_after_first)
    for asked in (asked_second, asked_fourth):
        assert asked and not any(crosses_hole(start, count) for _, start, count in asked)
        assert [(s, c) for _, s, c in asked] == [(s, c) for _, s, c in plan_after_first]
    assert [(s, c) for _, s, c in reprobed] == [(s, c) for _, s, c in plan_after_first] + [(12, 1)]
    # still coalesced where the device allows it: 0+2, 4+4, 16+1
    assert [(s, c) for _, s, c in plan_after_first] == [(0, 2), (4, 4), (16, 1)]
    # reported once, naming the signal and the address; counted once, not per poll
    assert src.payload_errors == 1 and src.refused_signals == ["missing"]
    assert [k for k, _ in events] == ["payload_error"]
    data = events[0][1]
    assert data["signal"] == "missing" and data["table"] == "holding" and data["offset"] == "12"
    assert "exception code 2" in data["error"]


async def test_single_signal_read_refused_is_reported_once(sparse_server):
    src = ModbusSource(device("modbus", {"host": "127.0.0.1", "port": sparse_server.port,
                                         "device_identification": False}, [
        {"name": "state", "address": {"table": "holding", "offset": 0}, "states": SIM_STATES},
        {"name": "far", "address": {"table": "holding", "offset": 100}},
        {"name": "gone", "address": {"table": "holding", "offset": 11}},
    ]))
    events = []
    src.on_event = lambda kind, data: events.append((kind, data))
    sparse_server.holding[0] = 1
    try:
        await src.connect()
        for _ in range(3):
            samples = await src.poll()
            assert len(samples) == 3
            batch = {s.signal: s.quality for s in samples}
            assert batch == {"state": Quality.GOOD, "far": Quality.GOOD, "gone": Quality.BAD}
    finally:
        await src.close()
    assert src.payload_errors == 1
    assert [d["signal"] for _, d in events] == ["gone"]


async def test_busy_device_keeps_the_plan_and_events_keep_their_count(modbus_server):
    """Exception 6 (busy) is transient: no re-plan, the read's signals are BAD this time only.
    The payload_error event's `count` is the running total, not the read's register count."""
    src = ModbusSource(sparse_device(modbus_server.port))  # no holes on this server
    events = []
    src.on_event = lambda kind, data: events.append((kind, data))
    modbus_server.holding[0] = 1
    try:
        await src.connect()
        modbus_server.busy = True
        busy = await src.poll()
        modbus_server.busy = False
        after = {s.signal: s.quality for s in await src.poll()}
    finally:
        await src.close()
    assert {s.quality for s in busy} == {Quality.BAD} and len(busy) == 6
    assert [(r.start, r.count) for r in src.requests] == [(0, 17)]
    assert after["state"] is Quality.GOOD and after["alarm"] is Quality.GOOD
    assert src.payload_errors == 6
    (kind, data), = events
    assert kind == "payload_error" and "exception code 6" in data["error"]
    assert data["count"] == 1 and data["quantity"] == "17"


async def test_refused_signal_is_asked_again_after_a_reconnect():
    """A device that refused an address (still booting, map not loaded) and later has it:
    after the reconnect the signal is read again, without a second report."""
    server = ModbusTestServer(free_port(), holes=HOLES)
    await server.start()
    src = ModbusSource(sparse_device(server.port))
    events = []
    src.on_event = lambda kind, data: events.append((kind, data))
    server.holding[12] = 77
    server.holding[0] = 1      # a mapped state code: an unknown one is a payload error of its own
    try:
        await src.connect()
        before = {s.signal: s for s in await src.poll()}
        await src.close()
        await server.stop()
        server.holes = [(2, 4)]  # the register at 12 exists now
        await server.start()
        await src.connect()
        after = {s.signal: s for s in await src.poll()}
        plan_after = [(r.start, r.count) for r in src.requests]
    finally:
        await src.close()
        await server.stop()
    assert before["missing"].quality is Quality.BAD
    assert after["missing"].quality is Quality.GOOD and after["missing"].value == 77
    assert src.refused_signals == [] and src.payload_errors == 1 and len(events) == 1
    assert sorted(plan_after) == [(0, 2), (4, 4), (12, 1), (16, 1)]
