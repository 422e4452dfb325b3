import asyncio
from datetime import datetime, timezone

import pytest
from asyncua import ua

from connectors.opcua.source import OpcUaSource
from edge.errors import SourceError
from edge.model import Quality
from tests.connectors.devices import SIM_STATES, device
from tests.connectors.servers import NS_URI, free_port


def machine(endpoint: str, *, ns: str = f"nsu={NS_URI}", **conn) -> OpcUaSource:
    return OpcUaSource(device("opcua", {"endpoint": endpoint, "publishing_interval_ms": 50,
                                        "watchdog_interval_s": 0.3, "timeout_s": 2.0,
                                        "serial_node": f"{ns};s=m1.SerialNumber", **conn}, [
        {"name": "state", "address": f"{ns};s=m1.State", "states": SIM_STATES},
        {"name": "power_kw", "address": f"{ns};s=m1.PowerKw", "scale": 2.0},
        {"name": "alarm", "address": f"{ns};s=m1.Alarm"},
    ]))


async def collect(src: OpcUaSource, until, timeout_s: float = 10.0):
    """Samples until `until(samples)` holds."""
    got = []

    async def run():
        async for batch in src.samples():
            got.extend(batch)
            if until(got):
                return

    await asyncio.wait_for(run(), timeout_s)
    return got


async def test_identity(opcua_server):
    src = machine(opcua_server.endpoint)
    try:
        identity = await src.connect()
    finally:
        await src.close()
    assert identity.protocol == "opcua"
    assert identity.application_uri == "urn:shangyun:test:m1"
    assert identity.serial_number == "SN-OPC-1"
    assert identity.details["product_name"] == "Press-9"
    assert identity.details["manufacturer_name"] == "ACME"
    assert identity.details["software_version"] == "1.2.3"
    assert identity.endpoint == opcua_server.endpoint


async def test_namespace_uri_resolves_to_the_servers_index(opcua_server):
    assert opcua_server.ns != 2  # padded, so a hard-coded ns=2 would be wrong
    by_uri, by_index = machine(opcua_server.endpoint), machine(opcua_server.endpoint, ns=f"ns={opcua_server.ns}")
    try:
        await by_uri.connect()
        await by_index.connect()
        await opcua_server.write("State", 2)
        a = await collect(by_uri, lambda g: any(s.signal == "state" and s.value == "idle" for s in g))
        b = await collect(by_index, lambda g: any(s.signal == "state" and s.value == "idle" for s in g))
    finally:
        await by_uri.close()
        await by_index.close()
    assert a and b


async def test_source_timestamp_scale_and_status(opcua_server):
    src = machine(opcua_server.endpoint)
    stamp = datetime(2024, 5, 1, 8, 30, 0, 123456, tzinfo=timezone.utc)
    try:
        await src.connect()
        await opcua_server.write("PowerKw", 21.5, source_ts=stamp)
        got = await collect(src, lambda g: any(s.signal == "power_kw" and s.value == 43.0 for s in g))
        power = [s for s in got if s.signal == "power_kw" and s.value == 43.0][-1]
        assert power.ts_ns == 1714552200_123456_000
        assert power.quality is Quality.GOOD

        await opcua_server.write("PowerKw", 1.0, status=ua.StatusCodes.UncertainLastUsableValue)
        got = await collect(src, lambda g: any(s.signal == "power_kw" and s.value == 2.0 for s in g))
        assert [s for s in got if s.value == 2.0][-1].quality is Quality.UNCERTAIN

        await opcua_server.write("State", 99)  # not in the state map
        got = await collect(src, lambda g: any(s.signal == "state" and s.value == "99" for s in g))
        assert [s for s in got if s.value == "99"][-1].quality is Quality.UNCERTAIN
    finally:
        await src.close()


async def test_missing_namespace_is_source_error(opcua_server):
    src = machine(opcua_server.endpoint, ns="nsu=urn:nobody")
    with pytest.raises(SourceError, match="no namespace 'urn:nobody'"):
        await src.connect()
    await src.close()


async def test_missing_node_is_reported_and_others_still_stream(opcua_server):
    events = []
    src = OpcUaSource(device("opcua", {"endpoint": opcua_server.endpoint, "publishing_interval_ms": 50}, [
        {"name": "alarm", "address": f"nsu={NS_URI};s=m1.Alarm"},
        {"name": "ghost", "address": f"nsu={NS_URI};s=m1.Ghost"},
    ]))
    src.on_event = lambda kind, data: events.append(kind)
    try:
        await src.connect()
        await opcua_server.write("Alarm", True)
        await collect(src, lambda g: any(s.signal == "alarm" and s.value is True for s in g))
    finally:
        await src.close()
    assert events == ["payload_error"]


async def test_unreachable_endpoint_is_source_error():
    src = machine(f"opc.tcp://127.0.0.1:{free_port()}/nothing")
    with pytest.raises(SourceError):
        await src.connect()
    await src.close()


async def test_server_stop_raises_source_error(opcua_server):
    src = machine(opcua_server.endpoint)
    await src.connect()
    try:
        with pytest.raises(SourceError):
            async def run():
                async for _ in src.samples():
                    if opcua_server.server is not None:
                        await opcua_server.stop()
            await opcua_server.write("State", 3)
            await asyncio.wait_for(run(), 15)
    finally:
        await src.close()
