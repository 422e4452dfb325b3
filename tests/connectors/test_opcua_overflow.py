"""A gateway that falls behind a fast OPC UA server (found by tests/bench/bench_opcua.py): the
subscription's queue fills, the link is dropped so nothing is discarded silently, and the
operator reads one line saying why, not asyncua's ERROR for every notification that found the
queue full (9,999 lines in one bench run)."""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import pytest
from asyncua import Server, ua

from connectors.logs import quiet_libraries
from connectors.opcua import source as opcua_source
from connectors.opcua.source import OpcUaSource
from edge.errors import SourceError
from tests.connectors.devices import device
from tests.connectors.servers import NS_URI, eventually, free_port
from tests.connectors.test_quiet_logs import library_logging  # noqa: F401 (fixture)

VARIABLES = 200


class FastServer:
    """Every variable changes every 20 ms."""

    def __init__(self, port: int):
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/test/fast"
        self.server: Server | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(NS_URI)
        obj = await server.nodes.objects.add_object(ns, "fast")
        nodes = [(await obj.add_variable(ua.NodeId(f"f{i}", ns), f"f{i}", 0.0)).nodeid for i in range(VARIABLES)]
        await server.start()
        self.server = server

        async def change() -> None:
            k = 0
            while True:
                k += 1
                for i, node in enumerate(nodes):
                    await server.write_attribute_value(node, ua.DataValue(ua.Variant(float(k * 1000 + i))))
                await asyncio.sleep(0.02)

        self.task = asyncio.create_task(change())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.server is not None:
            await self.server.stop()


@pytest.fixture
async def fast_server() -> AsyncIterator[FastServer]:
    server = FastServer(free_port())
    await server.start()
    yield server
    await server.stop()


async def test_falling_behind_is_one_line_and_a_clear_error(library_logging, caplog, fast_server,  # noqa: F811
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    quiet_libraries(False)
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(opcua_source, "QUEUE_MAX", 100)   # full after half a publish
    src = OpcUaSource(device("opcua", {"endpoint": fast_server.endpoint, "publishing_interval_ms": 50,
                                       "timeout_s": 5.0},
                             [{"name": f"f{i}", "address": f"nsu={NS_URI};s=f{i}"} for i in range(VARIABLES)]))
    try:
        await src.connect()
        # Nobody reads the samples: the queue fills with the first publish responses.
        await eventually(lambda: src._lost is not None, timeout_s=30, what="the link dropped")
        with pytest.raises(SourceError) as err:
            async for _ in src.samples():
                pass
    finally:
        await src.close()
    assert "fell behind" in str(err.value) and "100" in str(err.value)
    library = [r for r in caplog.records if r.name.startswith("asyncua") and r.levelno >= logging.WARNING
               and "queue full" in r.getMessage()]
    assert library == []    # the source says it, once, through the supervisor
