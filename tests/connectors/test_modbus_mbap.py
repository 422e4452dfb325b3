"""The Modbus TCP link (connectors/modbus/mbap.py) on the wire: answers cut anywhere by TCP or
several in one segment, a frame that is not MBAP, and what receiving an answer costs in memory.

The framing tests talk to a small MBAP responder (modbus_rig.Responder, asyncio streams on
loopback), because only a server we control can cut its answers at every byte; the memory test talks to
modbus-serial's ServerTCP (npm, a separate process), so that no server in this process allocates."""
from __future__ import annotations

import asyncio
import tracemalloc
from typing import AsyncIterator, Iterator

import pytest

from connectors.modbus.mbap import MbapLink
from connectors.modbus.source import ModbusSource
from tests.connectors.devices import device
from tests.connectors.modbus_rig import ModbusSerialPeer, Responder, register
from tests.connectors.servers import free_port


def unit(port: int, u: int, *, offset: int = 0, count: int = 3, in_flight: int = 1,
         timeout_s: float = 10.0) -> ModbusSource:
    return ModbusSource(device("modbus", {
        "host": "127.0.0.1", "port": port, "device_id": u, "max_in_flight": in_flight,
        "timeout_s": timeout_s, "device_identification": False},
        [{"name": f"r{i}", "address": {"table": "holding", "offset": offset + i}} for i in range(count)],
        device_id=f"u{u}"))


@pytest.fixture
async def responder(request) -> AsyncIterator[Responder]:
    server = Responder(**request.param)
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize("responder", [{"chunk": 1}, {"chunk": 5}, {"chunk": 0, "batch": 4},
                                       {"chunk": 11, "batch": 4}],
                         ids=["byte-by-byte", "mid-header", "four-in-one", "four-cut"], indirect=True)
async def test_answers_cut_anywhere_or_arriving_together_are_each_their_requests(responder):
    units = [unit(responder.port, u, offset=u, count=3, in_flight=4) for u in range(1, 5)]
    try:
        for s in units:
            await s.connect()
        for _ in range(3):
            batches = await asyncio.gather(*(s.poll() for s in units))
            for u, batch in enumerate(batches, start=1):
                assert {s.signal: s.value for s in batch} == {f"r{i}": register(u, u + i) for i in range(3)}
    finally:
        for s in units:
            await s.close()


@pytest.mark.parametrize("responder", [{"chunk": 0}], indirect=True)
async def test_a_frame_that_is_not_mbap_drops_the_link_and_fails_the_request(responder):
    src = unit(responder.port, 1)
    try:
        await src.connect()
        assert len(await src.poll()) == 3
        responder.garbage = True
        from edge.errors import SourceError
        with pytest.raises(SourceError, match="invalid Modbus TCP frame"):
            await src.poll()
        assert src.bus is not None and not src.bus.link.connected
    finally:
        await src.close()


@pytest.fixture
def peer() -> Iterator[ModbusSerialPeer]:
    server = ModbusSerialPeer(free_port(), {"holding": {i: 7 * i for i in range(20)}})
    server.start()
    yield server
    server.stop()


async def test_receiving_answers_allocates_no_large_buffer(peer):
    """asyncio's plain Protocol transport reads into a new 256 KiB bytes object per read; the
    link reads into its own buffer, so receiving stays far below that."""
    src = unit(peer.port, 1, count=20)
    try:
        await src.connect()
        await src.poll()          # warm: imports, caches, the first connection
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            for _ in range(20):
                batch = await src.poll()
                assert [s.value for s in batch] == [7 * i for i in range(20)]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak - base < 64 * 1024, f"{(peak - base) // 1024} KiB allocated at once while polling"
        assert isinstance(src.bus.link, MbapLink)
    finally:
        await src.close()
