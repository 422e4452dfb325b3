"""A unit that answers after its timeout: the late answer must be discarded, never taken as the
answer to the next request on the line (RTU frames carry no transaction id)."""
from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from connectors.modbus.source import ModbusSource
from edge.errors import SourceError
from edge.model import Quality
from tests.connectors.devices import device
from tests.connectors.modbus_rig import RtuBus, SlowLine
from tests.connectors.servers import ModbusTestServer, free_port

TIMEOUT_S = 0.3
SLOW_S = 0.2    # every answer takes this long (within the timeout)...
LATE_S = 0.45   # ...and the late one this long: it arrives while the next request waits


@pytest.fixture
async def line() -> AsyncIterator[tuple[RtuBus, SlowLine]]:
    bus = RtuBus(free_port(), [1, 2])
    await bus.start()
    slow = SlowLine(bus.port, slow_s=SLOW_S, late_s=LATE_S)
    await slow.start()
    yield bus, slow
    await slow.stop()
    await bus.stop()


def unit(port: int, unit_id: int) -> ModbusSource:
    return ModbusSource(device("modbus", {
        "transport": "rtu-over-tcp", "host": "127.0.0.1", "port": port, "device_id": unit_id,
        "timeout_s": TIMEOUT_S, "device_identification": False}, [
        {"name": "a", "address": {"table": "holding", "offset": 0}},
    ], device_id=f"unit-{unit_id}"))


def values(batch: list) -> dict[str, Any]:
    return {s.signal: s.value for s in batch}


@pytest.mark.parametrize("next_unit", [2, 1], ids=["same-unit", "other-unit"])
async def test_a_late_answer_is_not_taken_for_the_next_request(line, next_unit):
    bus, late_line = line
    slow, other = unit(late_line.port, 2), unit(late_line.port, 1)
    bus.registers[1][0], bus.registers[2][0] = 100, 200
    try:
        await slow.connect()
        await other.connect()
        late_line.late.add(2)
        with pytest.raises(SourceError):
            await slow.poll()
        # The register changes before the next request: its answer must carry the new value,
        # not the late answer to the timed-out request (which still says 200).
        bus.registers[2][0] = 201
        bus.registers[1][0] = 101
        for _ in range(3):   # and every answer after it is its own request's
            nxt = slow if next_unit == 2 else other
            assert values(await nxt.poll()) == {"a": 201 if next_unit == 2 else 101}
        assert slow.bus is not None and slow.bus.timeouts == 1
    finally:
        await slow.close()
        await other.close()


async def test_an_answer_later_than_the_drain_is_rejected_by_its_shape(line):
    """Later than twice the timeout, the late answer outlives the drain; it holds one register
    where the next request asked for two, so it is discarded (BAD), not decoded."""
    bus, late_line = line
    late_line.late_s = 2 * TIMEOUT_S + SLOW_S / 2   # lands while the next request waits
    first = unit(late_line.port, 2)
    wide = ModbusSource(device("modbus", {
        "transport": "rtu-over-tcp", "host": "127.0.0.1", "port": late_line.port, "device_id": 2,
        "timeout_s": TIMEOUT_S, "device_identification": False}, [
        {"name": "w", "address": {"table": "holding", "offset": 10, "type": "uint32"}},
    ], device_id="unit-2-wide"))
    bus.registers[2][0], bus.registers[2][10:12] = 200, [0, 7]
    try:
        await first.connect()
        await wide.connect()
        late_line.late.add(2)
        with pytest.raises(SourceError):
            await first.poll()
        [stale] = await wide.poll()
        assert stale.quality is Quality.BAD
        assert wide.bus is not None and wide.bus.stale_answers == 1
        assert values(await wide.poll()) == {"w": 7}
    finally:
        await first.close()
        await wide.close()


@pytest.fixture
async def tcp_line() -> AsyncIterator[tuple[ModbusTestServer, SlowLine]]:
    server = ModbusTestServer(free_port(), size=10)
    await server.start()
    slow = SlowLine(server.port, slow_s=SLOW_S, late_s=LATE_S, tcp=True)
    await slow.start()
    yield server, slow
    await slow.stop()
    await server.stop()


async def test_on_modbus_tcp_a_late_answer_is_dropped_by_its_transaction_id(tcp_line):
    server, late_line = tcp_line
    src = ModbusSource(device("modbus", {
        "host": "127.0.0.1", "port": late_line.port, "timeout_s": TIMEOUT_S,
        "device_identification": False}, [{"name": "a", "address": {"table": "holding", "offset": 0}}]))
    server.holding[0] = 200
    try:
        await src.connect()
        late_line.late.add(1)
        with pytest.raises(SourceError):
            await src.poll()
        server.holding[0] = 201
        for _ in range(3):   # no drain on TCP: the next request goes at once, and gets its own answer
            assert values(await src.poll()) == {"a": 201}
        assert src.bus is not None and src.bus.link.stale_answers == 1
    finally:
        await src.close()
