"""Monitoring parameters per signal (deadband, queue size, sampling interval), the polling mode,
and no repeated values across reconnects, against the asyncua server."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from connectors.opcua.source import OpcUaSource
from edge.errors import ConfigError
from tests.connectors.devices import device
from tests.connectors.servers import NS_URI, eventually
from tests.connectors.test_opcua_source import collect

STAMP = datetime(2025, 3, 1, 6, 0, 0, tzinfo=timezone.utc)


def source(endpoint: str, power_address, **conn) -> OpcUaSource:
    return OpcUaSource(device("opcua", {"endpoint": endpoint, "publishing_interval_ms": 50,
                                        "watchdog_interval_s": 0.3, "timeout_s": 2.0, **conn}, [
        {"name": "power_kw", "address": power_address},
        {"name": "alarm", "address": f"nsu={NS_URI};s=m1.Alarm"},
    ]))


def powers(samples) -> list[float]:
    return [s.value for s in samples if s.signal == "power_kw"]


async def test_absolute_deadband_suppresses_small_changes(opcua_server):
    src = source(opcua_server.endpoint, {"node": f"nsu={NS_URI};s=m1.PowerKw", "queue_size": 5,
                                         "sampling_interval_ms": 0,
                                         "deadband": {"type": "absolute", "value": 1.0}})
    try:
        await src.connect()
        got = []
        for i, value in enumerate([10.0, 10.5, 10.9, 12.0]):
            await opcua_server.write("PowerKw", value, source_ts=STAMP + timedelta(seconds=i))
            if value in (10.0, 12.0):  # the ones that pass the deadband
                got += await collect(src, lambda g, v=value: v in powers(g))
    finally:
        await src.close()
    assert 10.5 not in powers(got) and 10.9 not in powers(got)
    assert powers(got)[-2:] == [10.0, 12.0]


def test_bad_monitoring_parameters_are_config_errors():
    for bad in ({"node": "nope"}, {"node": f"nsu={NS_URI};s=X", "queue_size": 0},
                {"node": f"nsu={NS_URI};s=X", "deadband": {"type": "percent", "value": 150}},
                {"node": f"nsu={NS_URI};s=X", "deadband": {"type": "relative", "value": 1}},
                {"node": f"nsu={NS_URI};s=X", "extra": 1}):
        with pytest.raises((ConfigError, ValueError)):
            source("opc.tcp://127.0.0.1:1", bad)


async def test_reconnect_does_not_repeat_the_last_value(opcua_server):
    """A new subscription first sends every item's current value: after a dropped link that
    value was already delivered and must not be stored twice."""
    src = source(opcua_server.endpoint, f"nsu={NS_URI};s=m1.PowerKw")
    try:
        await src.connect()
        await opcua_server.write("PowerKw", 7.0, source_ts=STAMP)
        await collect(src, lambda g: 7.0 in powers(g))
        await src.connect()  # the link dropped and came back; the server kept its value
        await opcua_server.write("Alarm", True)
        after = await collect(src, lambda g: any(s.signal == "alarm" and s.value is True for s in g))
        await opcua_server.write("PowerKw", 8.0, source_ts=STAMP + timedelta(seconds=1))
        after += await collect(src, lambda g: 8.0 in powers(g))
    finally:
        await src.close()
    assert powers(after) == [8.0]


async def test_polling_mode_reads_at_an_interval_without_repeating_unchanged_values(opcua_server):
    src = source(opcua_server.endpoint, f"nsu={NS_URI};s=m1.PowerKw", mode="poll", poll_interval_s=0.05)
    assert src.poll_interval_s == 0.05
    got = []

    async def run():
        async for batch in src.samples():
            got.extend(batch)

    try:
        await src.connect()
        await opcua_server.write("PowerKw", 3.0, source_ts=STAMP)
        task = asyncio.create_task(run())
        await eventually(lambda: 3.0 in powers(got), what="first poll")
        await opcua_server.write("PowerKw", 4.0, source_ts=STAMP + timedelta(seconds=1))
        await eventually(lambda: 4.0 in powers(got), what="changed value polled")
        # a later poll (it brings the alarm) re-reads the unchanged 4.0: it must not reappear
        await opcua_server.write("Alarm", True)
        await eventually(lambda: any(s.signal == "alarm" and s.value is True for s in got), what="alarm")
        await opcua_server.write("PowerKw", 5.0, source_ts=STAMP + timedelta(seconds=2))
        await eventually(lambda: 5.0 in powers(got), what="third value polled")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await src.close()
    assert powers(got) == [3.0, 4.0, 5.0]


async def test_500_monitored_items_in_batches(opcua_server):
    from asyncua import ua
    n = 500
    obj = await opcua_server.server.nodes.objects.add_object(opcua_server.ns, "many")
    nodes = [await obj.add_variable(ua.NodeId(f"many.V{i}", opcua_server.ns), f"V{i}",
                                    ua.Variant(0.0, ua.VariantType.Double)) for i in range(n)]
    src = OpcUaSource(device("opcua", {"endpoint": opcua_server.endpoint, "publishing_interval_ms": 50,
                                       "timeout_s": 5.0, "max_items_per_call": 120},
                             [{"name": f"v{i}", "address": f"nsu={NS_URI};s=many.V{i}"} for i in range(n)]))
    try:
        await src.connect()
        for i, node in enumerate(nodes):
            await node.write_value(ua.Variant(float(i + 1), ua.VariantType.Double))
        got = await collect(src, lambda g: len({s.signal for s in g if s.value != 0.0}) == n, timeout_s=30)
    finally:
        await src.close()
    last = {s.signal: s.value for s in got}
    assert all(last[f"v{i}"] == float(i + 1) for i in range(n))
