"""Percent deadbands (they need the node's EURange) and the one summary line of what the server
revised, against the asyncua plant server and node-opcua (which applies percent deadbands)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import AsyncIterator

import pytest
from asyncua import ua

from connectors.opcua.monitoring import Revisions
from tests.connectors.opcua_plant import PlantServer
from tests.connectors.opcua_servers import NodeOpcUaServer
from tests.connectors.servers import NS_URI, free_port
from tests.connectors.test_opcua_paths import M, plant_source, values
from tests.connectors.test_opcua_source import collect

PERCENT = {"type": "percent", "value": 10}


@pytest.fixture
async def plant() -> AsyncIterator[PlantServer]:
    server = PlantServer(free_port(), machines=1)
    await server.start()
    yield server
    await server.stop()


async def test_percent_deadband_without_eurange_is_refused_and_the_rest_collect(plant):
    src = plant_source(plant.endpoint, [
        {"name": "speed", "address": {"path": f"/Objects/{M}1/Speed", "deadband": PERCENT}},
        {"name": "power_kw", "address": {"path": f"/Objects/{M}1/PowerKw", "deadband": PERCENT}},
    ])
    events = []
    src.on_event = lambda kind, data: events.append(data)
    try:
        await src.connect()
        await plant.write("Machine1/PowerKw", 50.0)
        await collect(src, lambda g: 50.0 in values(g, "power_kw"))
    finally:
        await src.close()
    assert src.refused_signals == ["speed"]
    [event] = events
    assert "speed" in event["error"] and "no EURange" in event["error"] and "absolute" in event["error"]


async def test_revised_sampling_is_one_summary_line_per_subscription(plant, caplog):
    """asyncua samples at the publishing interval whatever is asked: 20 items, one line."""
    src = plant_source(plant.endpoint, [
        {"name": f"s{i}", "address": {"path": f"/Objects/{M}1/Types/Double", "sampling_interval_ms": 10}}
        for i in range(19)] + [{"name": "power_kw", "address": f"/Objects/{M}1/PowerKw"}],
        publishing_interval_ms=250, sampling_interval_ms=100)
    caplog.set_level(logging.INFO, logger="shangyun")
    try:
        await src.connect()
        await src.connect()     # a re-subscription: its own line
    finally:
        await src.close()
    lines = [r.getMessage() for r in caplog.records if "revised" in r.getMessage()]
    # 19 signals on one node are one monitored item: 2 items
    assert lines == ["m01: 2 items, sampling revised 10 ms → 250 ms on 1, 100 ms → 250 ms on 1"] * 2, lines


def test_revision_summary_groups_items():
    rev = Revisions()
    for asked, got, queue in [(100, 250, 10)] * 20 + [(50, 50, 10)]:
        req = ua.MonitoredItemCreateRequest()
        req.RequestedParameters.SamplingInterval, req.RequestedParameters.QueueSize = asked, 10
        res = ua.MonitoredItemCreateResult(RevisedSamplingInterval=got, RevisedQueueSize=queue)
        rev.add(req, res)
    assert rev.summary("m01") == "m01: 21 items, sampling revised 100 ms → 250 ms on 20"
    assert Revisions().summary("m01") is None


async def test_node_opcua_applies_a_percent_deadband_on_its_eurange(tmp_path: Path):
    """Level's EURange is 0..200: 10 % is 20 units, so 100 → 105 → 119 are one value, 130 another."""
    why = NodeOpcUaServer.available()
    assert not why, why   # `make test-packages` installs node-opcua: missing is a broken set-up
    server = NodeOpcUaServer(free_port(), tmp_path / "node-pki")
    await server.start()
    src = plant_source(server.endpoint, [
        {"name": "level", "address": {"node": f"nsu={NS_URI};s=m1.Level", "deadband": PERCENT,
                                      "sampling_interval_ms": 0}},
        {"name": "speed", "address": {"node": f"nsu={NS_URI};s=m1.PowerKw", "deadband": PERCENT}},
    ])
    try:
        await src.connect()
        got = []
        for value in (100.0, 105.0, 119.0, 130.0):
            await server.write("Level", value)
            if value in (100.0, 130.0):
                got += await collect(src, lambda g, v=value: v in values(g, "level"))
    finally:
        await src.close()
        await server.stop()
    assert src.refused_signals == ["speed"]     # PowerKw is a plain variable: no EURange
    assert [v for v in values(got, "level") if v >= 100] == [100.0, 130.0]
