"""Addresses by browse path and nsu=, resolved again at every connect, and aggregating servers
(one endpoint, machines under their own node_root), against the asyncua plant server."""
from __future__ import annotations

import asyncio
import logging
import random
from typing import AsyncIterator

import pytest

from connectors.opcua.paths import parse_browse_path
from connectors.opcua.source import OpcUaSource
from connectors.supervisor import DeviceSupervisor, LinkState, stop_all
from edge.errors import ConfigError, SourceError
from edge.model import Quality
from tests.connectors.devices import device
from tests.connectors.opcua_plant import PLANT_URI, PlantServer
from tests.connectors.servers import eventually, free_port
from tests.connectors.test_opcua_source import collect
from tests.connectors.test_supervisor import Recorder

M = f"nsu={PLANT_URI};Machine"


def plant_source(endpoint: str, signals: list[dict], device_id: str = "m01", **conn) -> OpcUaSource:
    return OpcUaSource(device("opcua", {"endpoint": endpoint, "publishing_interval_ms": 50,
                                        "watchdog_interval_s": 0.3, "timeout_s": 3.0, **conn},
                              signals, device_id=device_id))


@pytest.fixture
async def plant() -> AsyncIterator[PlantServer]:
    server = PlantServer(free_port())
    await server.start()
    yield server
    await server.stop()


def values(samples, signal: str) -> list:
    return [s.value for s in samples if s.signal == signal and s.quality is Quality.GOOD]


def test_browse_path_syntax():
    p = parse_browse_path("/Objects/nsu=http://acme.com/ua/press;Press1/Counters/2:Good")
    assert p.absolute and [str(s) for s in p.segments] == [
        "Objects", "nsu=http://acme.com/ua/press;Press1", "Counters", "2:Good"]  # '/' inside the URI
    assert not parse_browse_path("2:Counters/Good").absolute
    for bad in ("/Objects//x", "/", "nsu=urn:x", "/Objects/nsu=;X"):
        with pytest.raises(ValueError):
            parse_browse_path(bad)


def test_address_forms_are_validated_on_their_own():
    from connectors.opcua.config import NodeAddress
    assert NodeAddress.model_validate("/Objects/2:M1/State").monitoring.path == "/Objects/2:M1/State"
    assert NodeAddress.model_validate({"path": "State"}).monitoring.path == "State"
    for bad in ("State", {"node": "ns=2;s=x", "path": "/Objects"}, {"index": 0}, {"path": "a//b"}):
        with pytest.raises(ValueError):
            NodeAddress.model_validate(bad)


async def test_paths_resolve_again_after_the_project_is_rebuilt():
    """The restarted server has another namespace index and other numeric ids for the same
    variables: paths by browse name and nsu= find them again at the reconnect."""
    port = free_port()
    server = PlantServer(port)
    await server.start()
    src = plant_source(server.endpoint, [
        {"name": "count_good", "address": f"/Objects/{M}1/Counters/Good"},
        {"name": "power_kw", "address": {"path": f"/Objects/{M}1/PowerKw", "queue_size": 2}},
    ])
    try:
        await src.connect()
        await server.write("Machine1/Counters/Good", 5)
        await collect(src, lambda g: 5 in values(g, "count_good"))
        before = server.nodes["Machine1/Counters/Good"].nodeid
        await server.stop()
        server = PlantServer(port, rebuild=1)
        await server.start()
        after = server.nodes["Machine1/Counters/Good"].nodeid
        assert (before.NamespaceIndex, before.Identifier) != (after.NamespaceIndex, after.Identifier)
        await src.connect()
        await server.write("Machine1/Counters/Good", 6)
        await server.write("Machine1/PowerKw", 42.5)
        got = await collect(src, lambda g: 6 in values(g, "count_good") and 42.5 in values(g, "power_kw"))
    finally:
        await src.close()
        await server.stop()
    assert src.refused_signals == []
    assert values(got, "count_good")[-1] == 6


async def test_a_path_that_no_longer_resolves_is_named_once_and_the_rest_collect(caplog):
    port = free_port()
    server = PlantServer(port, renamed={"Counters": "Zaehler"})   # the rebuilt project renamed a folder
    await server.start()
    src = plant_source(server.endpoint, [
        {"name": "count_good", "address": f"/Objects/{M}1/Counters/Good"},
        {"name": "power_kw", "address": f"/Objects/{M}1/PowerKw"},
    ])
    events = []
    src.on_event = lambda kind, data: events.append(data)
    caplog.set_level(logging.INFO)
    try:
        await src.connect()
        await src.connect()   # a reconnect: still missing, but said once
        await server.write("Machine1/PowerKw", 3.5)
        got = await collect(src, lambda g: 3.5 in values(g, "power_kw"))
    finally:
        await src.close()
        await server.stop()
    assert src.refused_signals == ["count_good"]
    assert values(got, "count_good") == []
    assert len(events) == 1, events
    error = events[0]["error"]
    assert f"resolves up to /Objects/{M}1, which has no child Counters" in error, error
    assert "count_good" in error
    assert sum("count_good" in r.getMessage() for r in caplog.records) == 1


async def test_relative_paths_need_a_node_root():
    with pytest.raises(ConfigError, match="node_root"):
        plant_source("opc.tcp://127.0.0.1:1", [{"name": "count_good", "address": "Counters/Good"}])


async def test_an_unresolvable_node_root_is_one_clear_error(plant):
    src = plant_source(plant.endpoint, [{"name": "count_good", "address": "Counters/Good"}],
                       node_root=f"/Objects/{M}9")
    with pytest.raises(SourceError, match=rf"node_root /Objects/{M}9: .*has no child .*Machine9"):
        await src.connect()
    await src.close()
    src = plant_source(plant.endpoint, [{"name": "count_good", "address": "Counters/Good"}],
                       node_root=f"nsu={PLANT_URI};i=999999")
    with pytest.raises(SourceError, match=r"node_root .*i=999999: the server has no such node \(BadNodeIdUnknown\)"):
        await src.connect()
    await src.close()


def machine_on(plant: PlantServer, n: int, device_id: str, root: str | None = None) -> OpcUaSource:
    return plant_source(plant.endpoint, [
        {"name": "count_good", "address": "Counters/Good"},
        {"name": "count_total", "address": {"path": "Counters/Total", "sampling_interval_ms": 0}},
    ], device_id=device_id, node_root=root or f"/Objects/{M}{n}")


async def test_machines_of_one_aggregating_server_each_read_their_own_nodes(plant):
    sources = [machine_on(plant, n, f"m0{n}") for n in (1, 2, 3)]
    by_id = plant_source(plant.endpoint, [{"name": "count_good", "address": "Counters/Good"}],
                         device_id="m02-by-id",
                         node_root=f"nsu={PLANT_URI};i={plant.nodes['Machine2/Counters/Good'].nodeid.Identifier - 2}")
    identities = []
    try:
        for src in [*sources, by_id]:
            identities.append(await src.connect())
        for n, src in enumerate(sources, start=1):
            got = await collect(src, lambda g, n=n: n * 10 in values(g, "count_good")
                                and n * 11 in values(g, "count_total"))
            assert set(values(got, "count_good")) == {n * 10}
        got = await collect(by_id, lambda g: 20 in values(g, "count_good"))
    finally:
        for src in [*sources, by_id]:
            await src.close()
    roots = [i.details["node_root"] for i in identities[:3]]
    assert roots == [f"/Objects/{M}{n}" for n in (1, 2, 3)]
    fingerprints = [i.fingerprint() for i in identities[:3]]
    assert len(set(fingerprints)) == 3    # one server certificate, three machines
    assert identities[0].certificate_sha256 == identities[1].certificate_sha256


async def test_the_same_node_root_twice_is_the_same_machine(plant):
    """Two device entries for one machine folder present the same identity: the verifier sees
    one machine claimed twice, not two."""
    from verifier.distinct.identity import endpoint_key
    a, b, other = machine_on(plant, 1, "a"), machine_on(plant, 1, "b"), machine_on(plant, 2, "c")
    try:
        ids = [await s.connect() for s in (a, b, other)]
    finally:
        for s in (a, b, other):
            await s.close()
    assert ids[0].fingerprint() == ids[1].fingerprint() != ids[2].fingerprint()
    keys = [endpoint_key(i, ("node_root",)) for i in ids]
    assert keys[0] == keys[1] != keys[2]


async def test_machines_on_one_endpoint_share_one_session_and_recover_together():
    """Three node roots, one secure channel and session; a server restart takes all three
    offline and each comes back on the new session, collecting its own values."""
    port = free_port()
    server = PlantServer(port)
    await server.start()
    sources = {n: machine_on(server, n, f"m0{n}") for n in (1, 2, 3)}
    recs = {n: Recorder() for n in sources}
    sups = {n: DeviceSupervisor(src, recs[n].emit, recs[n], backoff_initial_s=0.05, backoff_max_s=0.5,
                                rng=random.Random(n)) for n, src in sources.items()}
    tasks = {sup: asyncio.create_task(sup.run()) for sup in sups.values()}
    try:
        await eventually(lambda: all(s.state is LinkState.ONLINE for s in sups.values()), timeout_s=30,
                         what="all online")
        assert server.server is not None and len(server.server.bserver.clients) == 1
        await server.stop()
        await eventually(lambda: all(s.state is LinkState.OFFLINE for s in sups.values()), timeout_s=30,
                         what="all offline")
        server = PlantServer(port, rebuild=1)
        await server.start()
        await eventually(lambda: all(s.state is LinkState.ONLINE for s in sups.values()), timeout_s=30,
                         what="all back online")
        for n in sources:
            await server.write(f"Machine{n}/Counters/Good", 100 + n)
        for n in sources:
            await eventually(lambda n=n: 100 + n in values(recs[n].samples, "count_good"), timeout_s=20,
                             what=f"machine {n} after the restart")
        assert len(server.server.bserver.clients) == 1
    finally:
        assert await stop_all(tasks, timeout_s=10) == []
        await server.stop()
    for n in sources:
        assert set(values(recs[n].samples, "count_good")) == {n * 10, 100 + n}   # its own, no others'


async def test_leaving_a_shared_session_keeps_the_others_collecting(plant):
    a, b = machine_on(plant, 1, "a"), machine_on(plant, 2, "b")
    try:
        await a.connect()
        await b.connect()
        await a.close()
        await plant.write("Machine2/Counters/Good", 77)
        got = await collect(b, lambda g: 77 in values(g, "count_good"))
    finally:
        await a.close()
        await b.close()
    assert 77 in values(got, "count_good")
    assert plant.server is not None
    await eventually(lambda: len(plant.server.bserver.clients) == 0, timeout_s=10, what="last one out closes")
