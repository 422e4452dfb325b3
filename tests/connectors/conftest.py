from __future__ import annotations

from typing import AsyncIterator, Iterator

import pytest

from simulator.broker import MosquittoBroker
from tests.connectors.servers import ModbusTestServer, OpcUaTestServer, free_port

MODBUS_IDENTITY = {0x00: "ACME", 0x01: "P100", 0x02: "1.2", 0x80: "SN-MB-1"}


@pytest.fixture
async def modbus_server() -> AsyncIterator[ModbusTestServer]:
    server = ModbusTestServer(free_port(), identity=MODBUS_IDENTITY)
    server.holding[0] = 1   # a state code the test devices map (an unmapped one is a payload error)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def opcua_server() -> AsyncIterator[OpcUaTestServer]:
    server = OpcUaTestServer(free_port(), pad_namespaces=2)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def broker() -> Iterator[MosquittoBroker]:
    # The same private broker the simulator and the demo use (with their queue settings).
    with MosquittoBroker() as b:
        yield b
