"""Our OPC UA source against node-opcua's server, a stack this project did not write (installed
by make test-packages into tests/peers/node-opcua): data, hostile values, a killed and
restarted server, with one log line per outage and recovery and no duplicated readings."""
from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from pathlib import Path
from typing import AsyncIterator

import pytest

from connectors.logs import quiet_libraries
from connectors.opcua.source import OpcUaSource
from connectors.supervisor import DeviceSupervisor, LinkState, stop_all
from edge.model import Quality
from tests.connectors.devices import SIM_STATES, device
from tests.connectors.opcua_servers import NodeOpcUaServer
from tests.connectors.servers import NS_URI, eventually, free_port
from tests.connectors.test_opcua_source import collect
from tests.connectors.test_quiet_logs import library_logging, own_lines  # noqa: F401 (fixture)
from tests.connectors.test_supervisor import Recorder


@pytest.fixture
async def node_server(tmp_path: Path) -> AsyncIterator[NodeOpcUaServer]:
    why = NodeOpcUaServer.available()
    # `make test-packages` installs node-opcua: missing is a broken set-up, not a skip.
    assert not why, why
    server = NodeOpcUaServer(free_port(), tmp_path / "node-pki")
    await server.start()
    yield server
    await server.stop()


def node_source(endpoint: str, device_id: str = "np-1", **conn) -> OpcUaSource:
    return OpcUaSource(device("opcua", {"endpoint": endpoint, "publishing_interval_ms": 50,
                                        "watchdog_interval_s": 0.3, "timeout_s": 3.0,
                                        "serial_node": f"nsu={NS_URI};s=m1.SerialNumber", **conn}, [
        {"name": "state", "address": f"nsu={NS_URI};s=m1.State", "states": SIM_STATES},
        {"name": "power_kw", "address": f"nsu={NS_URI};s=m1.PowerKw"},
        # hostile: the server answers a string where a number is due
        {"name": "energy_kwh", "address": f"nsu={NS_URI};s=m1.SerialNumber"},
    ], device_id=device_id))


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_collects_from_node_opcua(node_server, mode):
    src = node_source(node_server.endpoint, mode=mode, poll_interval_s=0.05)
    events = []
    src.on_event = lambda kind, data: events.append(kind)
    try:
        identity = await src.connect()
        await node_server.write("State", 2)
        await node_server.write("PowerKw", 12.25)
        got = await collect(src, lambda g: any(s.signal == "state" and s.value == "idle" for s in g)
                            and any(s.signal == "power_kw" and s.value == 12.25 for s in g))
    finally:
        await src.close()
    assert identity.application_uri == "urn:shangyun:test:node-opcua"
    assert identity.serial_number == "SN-NODE-1"
    assert identity.details["product_name"] == "NodePress"
    assert identity.certificate_sha256  # node-opcua sends its certificate even without security
    power = [s for s in got if s.signal == "power_kw" and s.value == 12.25][-1]
    assert power.quality is Quality.GOOD
    energy = [s for s in got if s.signal == "energy_kwh"]
    assert energy and all(s.quality is not Quality.GOOD for s in energy)
    assert "payload_error" in events


async def test_killed_and_restarted_server_resumes_without_duplicates(library_logging, caplog,  # noqa: F811
                                                                     node_server):
    quiet_libraries(False)
    caplog.set_level(logging.INFO)
    rec = Recorder()
    sup = DeviceSupervisor(node_source(node_server.endpoint, device_id="np-1"), rec.emit, rec,
                           backoff_initial_s=0.05, backoff_max_s=0.5, rng=random.Random(1))
    task = asyncio.create_task(sup.run())
    try:
        await eventually(lambda: sup.state is LinkState.ONLINE, timeout_s=20, what="online")
        for value in (1.5, 2.5):
            await node_server.write("PowerKw", value)
            await eventually(lambda v=value: any(s.value == v for s in rec.samples), what=f"{value}")
        assert node_server.proc is not None
        node_server.proc.kill()  # killed, not shut down: no goodbye to the client
        await node_server.proc.wait()
        node_server.proc = None
        await eventually(lambda: sup.state is LinkState.OFFLINE, timeout_s=20, what="offline")
        await node_server.start()
        await eventually(lambda: sup.state is LinkState.ONLINE, timeout_s=30, what="back online")
        for value in (3.5, 4.5):
            await node_server.write("PowerKw", value)
            await eventually(lambda v=value: any(s.value == v for s in rec.samples), what=f"{value}")
    finally:
        assert await stop_all({sup: task}, timeout_s=10) == []

    good = [(s.signal, s.ts_ns, s.value) for s in rec.samples if s.quality is Quality.GOOD]
    assert [k for k, n in Counter(good).items() if n > 1] == []
    assert [v for sig, _, v in good if sig == "power_kw" and v in (1.5, 2.5, 3.5, 4.5)] == [1.5, 2.5, 3.5, 4.5]
    lines = own_lines(caplog, "np-1")
    hostile = [m for _, m in lines if "bad payload" in m]
    assert len(hostile) == 1 and "energy_kwh" in hostile[0]  # once, not again per reconnect
    link = [(level, m) for level, m in lines if "bad payload" not in m]
    assert [level for level, _ in link] == ["WARNING", "INFO"], link
    assert "offline" in link[0][1] and "back online" in link[1][1]
    assert "Traceback" not in caplog.text
