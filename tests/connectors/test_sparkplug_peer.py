"""The Sparkplug B route against an edge node we did not write: Eclipse Tahu's encoder
(npm `sparkplug-payload`) publishing through a real Mosquitto with mqtt.js
(tests/peers/sparkplug, installed by `make test-packages`)."""
from __future__ import annotations

import asyncio
import time

import pytest

from connectors.mqtt import routing
from connectors.mqtt.sparkplug.route import SparkplugRoute
from tests.connectors.devices import device
from tests.connectors.sparkplug_rig import Harness, run_edge_node

pytestmark = pytest.mark.integration

G, NODE = "plant1", "gw-7"
T0 = 1_764_000_000_000          # ms
DEADLINE_S = 60.0


def press(device_name: str | None, device_id: str, topic: str = f"spBv1.0/{G}/+/{NODE}/#") -> object:
    return device("mqtt", {"host": "127.0.0.1", "topic": topic, "payload_format": "sparkplug",
                           "sparkplug": {"group": G, "edge_node": NODE, "device": device_name,
                                         "rebirth_interval_s": 0}},
                  [{"name": "power_kw", "address": "Power/kW"},
                   {"name": "count_total", "address": "Counts/Total"},
                   {"name": "temp", "address": "Temp"}], device_id=device_id)


def topic(kind: str, dev: str | None = None) -> str:
    return f"spBv1.0/{G}/{kind}/{NODE}" + (f"/{dev}" if dev else "")


def msg(kind: str, seq: int, metrics: list[dict], dev: str | None = None) -> dict:
    return {"topic": topic(kind, dev), "payload": {"timestamp": T0 + seq, "seq": seq, "metrics": metrics}}


BIRTH_METRICS = [
    {"name": "Power/kW", "alias": 1, "type": "Double", "value": 1.25, "timestamp": T0},
    {"name": "Counts/Total", "alias": 2, "type": "Int64", "value": 10, "timestamp": T0},
    {"name": "Temp", "alias": 3, "type": "Int16", "value": -7, "timestamp": T0},
    {"name": "Info/Serial Number", "alias": 4, "type": "String", "value": "SN-4711"},
    {"name": "Info/Model", "alias": 5, "type": "String", "value": "X200"},
]


async def wait_for(predicate, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_births_aliases_gap_deaths_through_tahu(broker, tmp_path):
    route = SparkplugRoute()
    route.add_device(press("press-1", "p1"))
    node_birth = {"name": "bdSeq", "type": "UInt64", "value": 7}
    script = {
        "will": {"topic": topic("NDEATH"), "payload": {"timestamp": T0, "metrics": [node_birth]}},
        "command_topic": topic("NCMD"), "commands": 1, "die": True,
        "messages": [
            msg("NBIRTH", 0, [node_birth, {"name": "Node Control/Rebirth", "type": "Boolean", "value": False}]),
            msg("DBIRTH", 1, BIRTH_METRICS, "press-1"),
            msg("DBIRTH", 2, [{"name": "Speed", "alias": 9, "type": "Float", "value": 3.5},
                              {"name": "Serial", "alias": 10, "type": "String", "value": "SN-2"}], "press-2"),
            # By alias only, as Sparkplug edge nodes send data after the birth.
            msg("DDATA", 3, [{"alias": 1, "type": "Double", "value": 4.5, "timestamp": T0 + 3},
                             {"alias": 2, "type": "Int64", "value": 12, "timestamp": T0 + 3},
                             {"alias": 3, "type": "Int16", "value": -300, "timestamp": T0 + 3}], "press-1"),
            # seq 4 lost: a gap, which asks for a rebirth.
            msg("DDATA", 5, [{"alias": 2, "type": "Int64", "value": 13, "timestamp": T0 + 5}], "press-1"),
            msg("DDATA", 6, [{"alias": 9, "type": "Float", "value": 1.0}], "press-2"),
            msg("DDEATH", 7, [], "press-1"),
        ],
    }
    async with Harness(broker, route) as rig:
        commands = await run_edge_node(broker, script, tmp_path)
        await wait_for(lambda: len(rig.got.deaths) >= 2, "DDEATH and the will's NDEATH")
    got = rig.got

    # The rebirth request, as Tahu decodes it.
    assert [c["topic"] for c in commands] == [topic("NCMD")]
    [metric] = commands[0]["payload"]["metrics"]
    assert (metric["name"], metric["type"], metric["value"]) == ("Node Control/Rebirth", "Boolean", True)
    assert route.host.counters.sequence_gaps == 1
    assert route.host.counters.rebirths_requested == 1

    values = {(s.signal, s.ts_ns // 1_000_000): s.value for s in got.samples}
    assert values[("power_kw", T0)] == 1.25           # birth values are readings too
    assert values[("power_kw", T0 + 3)] == 4.5        # alias 1 resolved from the DBIRTH
    assert values[("count_total", T0 + 3)] == 12
    assert values[("temp", T0)] == -7 and values[("temp", T0 + 3)] == -300   # Int16, negative
    assert values[("count_total", T0 + 5)] == 13      # data after the gap is kept
    assert {s.device_id for s in got.samples} == {"p1"}
    assert route.time_sources("p1") == {"device": len(got.samples)}   # every metric had its time

    [(dev, identity)] = got.births
    assert dev == "p1" and identity.serial_number == "SN-4711"
    assert identity.details["Info/Model"] == "X200"
    assert identity.fingerprint() == "sparkplug:SN-4711"

    assert [d for d, _ in got.deaths] == ["p1", "p1"]
    assert "DDEATH" in got.deaths[0][1] and "NDEATH" in got.deaths[1][1]

    # press-2 is not configured: its birth is a suggestion, its data a dead letter.
    [(sid, fields, yaml_text)] = got.unconfigured
    assert sid == "press-2" and fields["device"] == "press-2"
    assert "address: Speed" in yaml_text and "payload_format: sparkplug" in yaml_text
    assert [r.reason for r in got.rejects] == [routing.UNKNOWN_DEVICE]
    assert got.rejects[0].topic == topic("DDATA", "press-2")


async def test_a_stale_death_is_ignored_and_data_without_birth_asks_for_one(broker, tmp_path):
    route = SparkplugRoute()
    route.add_device(press("press-1", "p1"))
    script = {
        "command_topic": topic("NCMD"), "commands": 1,
        "messages": [
            # The gateway joined late: data without the births. Names still map; aliases cannot.
            msg("DDATA", 40, [{"name": "Power/kW", "type": "Double", "value": 2.0, "timestamp": T0},
                              {"alias": 2, "type": "Int64", "value": 5}], "press-1"),
        ],
    }
    async with Harness(broker, route) as rig:
        commands = await run_edge_node(broker, script, tmp_path)
        await wait_for(lambda: rig.got.messages >= 1, "the DDATA")
        assert [c["topic"] for c in commands] == [topic("NCMD")]
        assert [(s.signal, s.value) for s in rig.got.samples] == [("power_kw", 2.0)]
        assert any("alias 2" in e for _, e in rig.got.field_errors)

        # A birth with bdSeq 3, then the will of an earlier session (bdSeq 2): not a death.
        script = {"messages": [
            msg("NBIRTH", 0, [{"name": "bdSeq", "type": "UInt64", "value": 3}]),
            {"topic": topic("NDEATH"), "payload": {"timestamp": T0, "metrics": [
                {"name": "bdSeq", "type": "UInt64", "value": 2}]}},
            msg("NDATA", 1, [{"name": "Ping", "type": "Int32", "value": 1}]),
        ]}
        await run_edge_node(broker, script, tmp_path)
        await wait_for(lambda: rig.got.messages >= 4, "the node's messages")
    assert rig.got.deaths == []
    assert route.host.counters.stale_deaths == 1
    assert route.host.sessions[(G, NODE)].alive
