"""Modbus TCP units behind one endpoint share one connection; with `max_in_flight` the link
(connectors/modbus/mbap.py) sends their requests together and matches each answer to its
request by transaction id. The server is modbus-serial's ServerTCP (npm), which answers
pipelined requests in order (pymodbus's server does not answer a second request that arrives
in the same segment, which is why max_in_flight defaults to 1)."""
from __future__ import annotations

import asyncio
from typing import Iterator

import pytest
from pydantic import ValidationError

from connectors.modbus.config import ModbusConnection
from connectors.modbus.source import ModbusSource
from tests.connectors.devices import device
from tests.connectors.modbus_rig import ModbusSerialPeer
from tests.connectors.servers import free_port

UNITS = 20


@pytest.fixture
def peer() -> Iterator[ModbusSerialPeer]:
    # modbus-serial serves one image whatever the unit id: each unit reads its own offset.
    server = ModbusSerialPeer(free_port(), {"holding": {i: 1000 + i for i in range(UNITS + 2)}})
    server.start()
    yield server
    server.stop()


def unit(port: int, u: int, in_flight: int) -> ModbusSource:
    return ModbusSource(device("modbus", {
        "host": "127.0.0.1", "port": port, "device_id": u, "max_in_flight": in_flight,
        "timeout_s": 5, "device_identification": False},
        [{"name": "a", "address": {"table": "holding", "offset": u, "type": "uint32"}}],
        device_id=f"u{u}"))


@pytest.mark.parametrize("in_flight", [UNITS, 1])
async def test_units_of_one_endpoint_share_a_connection_and_pipeline_as_allowed(peer, in_flight):
    sources = [unit(peer.port, u, in_flight) for u in range(1, UNITS + 1)]
    try:
        for s in sources:
            await s.connect()
        assert len({id(s.bus) for s in sources}) == 1
        link = sources[0].bus.link
        for _ in range(3):
            batches = await asyncio.gather(*(s.poll() for s in sources))
            for u, [sample] in enumerate(batches, start=1):
                # each answer is its own request's: offset u holds 1000+u, u+1 holds 1001+u
                assert sample.value == ((1000 + u) << 16) + 1001 + u
        assert link.most_in_flight == in_flight
        if in_flight > 1:
            assert link.writes < 3 * UNITS   # requests made together left together
    finally:
        for s in sources:
            await s.close()


def test_max_in_flight_is_for_tcp_only():
    with pytest.raises(ValidationError, match="max_in_flight applies to tcp only"):
        ModbusConnection(transport="rtu-over-tcp", host="h", max_in_flight=4)
