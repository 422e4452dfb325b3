"""The bus scheduler's request path (connectors/modbus/bus.py) on Modbus TCP: what a request
costs the event loop, timeouts from one watchdog per bus, cancelled polls, and polls that have
nothing to read still keeping their schedule."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest

from connectors.modbus.source import ModbusSource
from edge.errors import SourceError
from edge.model import Quality
from tests.connectors.devices import device
from tests.connectors.modbus_rig import Responder, register
from tests.connectors.servers import ModbusTestServer, free_port

SILENT = 9


@pytest.fixture
async def responder() -> AsyncIterator[Responder]:
    server = Responder(silent=(SILENT,))
    await server.start()
    yield server
    await server.stop()


def unit(port: int, u: int, *, timeout_s: float = 10.0, in_flight: int = 1, **conn: Any) -> ModbusSource:
    return ModbusSource(device("modbus", {
        "host": "127.0.0.1", "port": port, "device_id": u, "max_in_flight": in_flight,
        "timeout_s": timeout_s, "device_identification": False, **conn},
        [{"name": f"r{i}", "address": {"table": "holding", "offset": i}} for i in range(4)],
        device_id=f"u{u}"))


class TimerCount:
    """Counts the timers the running loop is asked for (call_later goes through call_at)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.calls = 0
        self._call_at = self.loop.call_at

    def __enter__(self) -> "TimerCount":
        def call_at(when: float, callback: Any, *args: Any, **kw: Any) -> asyncio.TimerHandle:
            self.calls += 1
            return self._call_at(when, callback, *args, **kw)
        self.loop.call_at = call_at  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.loop.call_at


async def test_a_request_arms_no_timer_of_its_own(responder):
    """A timeout per request was a timer per request (asyncio.timeout): a heap push, a cancel,
    and a heap a thousand units deep. One watchdog per bus times them all out."""
    a, b = unit(responder.port, 1), unit(responder.port, 2)
    try:
        await a.connect()
        await b.connect()
        with TimerCount() as timers:
            for _ in range(20):
                batches = await asyncio.gather(a.poll(), b.poll())
                for u, batch in zip((1, 2), batches):
                    assert [s.value for s in batch] == [register(u, i) for i in range(4)]
        assert timers.calls <= 2, f"{timers.calls} timers for 40 requests"
    finally:
        await a.close()
        await b.close()


async def test_units_due_at_the_same_instant_share_one_start_timer(responder):
    """Twenty units of one line polled at the same slot of the grid: one timer starts all
    their requests (it was a timer, a heap entry and a callback per request), in the order
    they were asked for, and each gets its own answer."""
    units = [unit(responder.port, u) for u in range(1, 21) if u != SILENT]
    loop = asyncio.get_running_loop()
    try:
        for s in units:
            await s.connect()
        at = loop.time() + 0.2
        with TimerCount() as timers:
            batches = await asyncio.gather(*(s.poll(at=at) for s in units))
        # the start timer and the bus's watchdog (a timer per request was 20)
        assert timers.calls <= 2, f"{timers.calls} timers for {len(units)} requests due at once"
        for s, batch in zip(units, batches):
            u = s.config.device_id
            assert [x.value for x in batch] == [register(u, i) for i in range(4)]
            assert s.last_started_s >= at   # not before its slot
        starts = [s.last_started_s for s in units]
        assert starts == sorted(starts)   # served in the order asked, one at a time
    finally:
        for s in units:
            await s.close()


async def test_a_poll_waiting_for_its_slot_fails_when_the_bus_closes(responder):
    """The last unit leaves while a poll waits for its start time: the poll fails at once
    instead of waiting for a slot on a closed line."""
    lone = unit(responder.port, 1)
    await lone.connect()
    loop = asyncio.get_running_loop()
    waiting = asyncio.ensure_future(lone.poll(at=loop.time() + 60))
    await asyncio.sleep(0.01)
    await lone.close()
    with pytest.raises(SourceError):
        await asyncio.wait_for(waiting, 10)   # a deadline for a hang, not a measured time


async def test_a_short_timeout_is_not_held_up_by_a_longer_one_in_flight(responder):
    """Two silent units in flight at once, the longer timeout first: the watchdog, armed for
    the first deadline, is re-armed for the earlier one."""
    patient = unit(responder.port, SILENT, timeout_s=60.0, in_flight=2)
    hasty = unit(responder.port, SILENT, timeout_s=0.3, in_flight=2)
    try:
        await patient.connect()
        await hasty.connect()
        slow = asyncio.ensure_future(patient.poll())
        await asyncio.sleep(0)          # the patient request goes first
        with pytest.raises(SourceError, match="no answer within 0.3 s"):
            await hasty.poll()
        assert not slow.done()           # still within its own minute
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
        assert hasty.bus is not None and hasty.bus.timeouts == 1
    finally:
        await patient.close()
        await hasty.close()


async def test_a_cancelled_poll_leaves_the_line_to_the_others(responder):
    """A poll cancelled while its request waits for its turn is never sent; one cancelled in
    flight keeps the line until its timeout (the unit may still answer), then the queue goes on."""
    silent = unit(responder.port, SILENT, timeout_s=0.3)
    waiting, other = unit(responder.port, 1), unit(responder.port, 2)
    try:
        for s in (silent, waiting, other):
            await s.connect()
        in_flight = asyncio.ensure_future(silent.poll())
        queued = asyncio.ensure_future(waiting.poll())
        await asyncio.sleep(0)
        queued.cancel()
        in_flight.cancel()
        await asyncio.gather(in_flight, queued, return_exceptions=True)
        assert [s.value for s in await other.poll()] == [register(2, i) for i in range(4)]
        # the silent unit's and this one's, read in order on the one connection: the cancelled
        # queued request never left
        assert responder.requests == 2
        assert [s.value for s in await waiting.poll()] == [register(1, i) for i in range(4)]
    finally:
        for s in (silent, waiting, other):
            await s.close()


async def test_a_poll_with_every_signal_refused_still_waits_for_its_slot():
    """With every address refused a poll has no read to wait for its slot: it must wait on
    its own, not yield BAD batches as fast as the loop turns."""
    server = ModbusTestServer(free_port(), size=10, holes=[(2, 5)])
    await server.start()
    src = ModbusSource(device("modbus", {
        "host": "127.0.0.1", "port": server.port, "timeout_s": 5, "poll_interval_s": 0.1,
        "device_identification": False},
        [{"name": "gone", "address": {"table": "holding", "offset": 3}}]))
    try:
        await src.connect()
        stream = src.samples()
        loop = asyncio.get_running_loop()
        for _ in range(4):
            [sample] = await stream.__anext__()
            assert sample.quality is Quality.BAD
            assert loop.time() >= src.poll_due_s   # not ahead of its schedule
        assert src.refused_signals == ["gone"]
        await stream.aclose()
    finally:
        await src.close()
        await server.stop()


async def test_units_are_due_on_one_grid_of_the_interval(responder):
    """Each unit with a phase of its own woke the loop once per unit and poll; every unit with
    the same interval is now due at the same instants (whole multiples of the interval), so
    their requests are started in one wake-up and their answers come back to a busy loop."""
    interval = 0.5
    units = [unit(responder.port, u, poll_interval_s=interval) for u in range(1, 42) if u != SILENT]

    async def second_slot(src: ModbusSource) -> float:
        stream = src.samples()
        try:
            await stream.__anext__()     # the first poll is at once, then onto the grid
            await stream.__anext__()
            return src.poll_due_s
        finally:
            await stream.aclose()
    try:
        for s in units:
            await s.connect()
        dues = await asyncio.gather(*(second_slot(s) for s in units))
    finally:
        for s in units:
            await s.close()
    # monotonic due times on the grid: phase = due mod interval (rounded against float noise)
    phases = {round(due % interval, 6) % interval for due in dues}
    assert phases == {0.0}, sorted(phases)


async def test_a_poll_queued_when_the_bus_closes_fails_instead_of_waiting_forever(responder):
    """The last unit leaving closes the bus; a poll still waiting for its turn (here behind
    the inter-frame pause) gets an error."""
    first = unit(responder.port, 1, inter_frame_s=1.0)   # the bus keeps the first unit's pause
    second = unit(responder.port, 2)
    try:
        await first.connect()
        await second.connect()
        assert len(await first.poll()) == 4
        queued = asyncio.ensure_future(second.poll())
        await asyncio.sleep(0)          # queued behind the pause
        assert not queued.done()
    finally:
        await first.close()
        await second.close()
    with pytest.raises(SourceError):
        await asyncio.wait_for(queued, 10)   # a deadline for a hang, not a measured time
