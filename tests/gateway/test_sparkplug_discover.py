"""`shangyun discover mqtt` recognises Sparkplug B: Eclipse Tahu's edge node (tests/peers/sparkplug)
publishes through a real Mosquitto; discovery decodes births and data, lists each group / edge
node / device with its metrics' datatypes, aliases and rates, and writes device YAML for the
Sparkplug route that `shangyun check` accepts and a gateway then collects from unchanged."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import yaml

from connectors.mqtt.discover import connection_from_url, discover, write_suggestions
from gateway.check import check_config
from gateway.config import load_config
from gateway.runner import Gateway
from simulator.broker import MosquittoBroker
from tests.connectors.sparkplug_rig import run_edge_node
from tests.connectors.test_sparkplug_peer import BIRTH_METRICS, G, NODE, T0, msg
from tests.gateway.test_end_to_end import wait_for

pytestmark = pytest.mark.integration

NODE_BIRTH = msg("NBIRTH", 0, [{"name": "bdSeq", "type": "UInt64", "value": 1},
                               {"name": "Node Control/Rebirth", "type": "Boolean", "value": False}])
PRESS_2_BIRTH = msg("DBIRTH", 2, [{"name": "Speed", "alias": 9, "type": "Float", "value": 3.5},
                                  {"name": "Speed rpm", "alias": 10, "type": "Int32", "value": 7},
                                  {"name": "Speed/rpm", "alias": 11, "type": "Int32", "value": 8}], "press-2")
MESSAGES = [
    NODE_BIRTH,
    msg("DBIRTH", 1, BIRTH_METRICS, "press-1"),
    PRESS_2_BIRTH,
    # By alias only, as edge nodes send data after their births.
    msg("DDATA", 3, [{"alias": 1, "type": "Double", "value": 4.5, "timestamp": T0 + 3},
                     {"alias": 2, "type": "Int64", "value": 12, "timestamp": T0 + 3}], "press-1"),
    msg("DDATA", 4, [{"alias": 1, "type": "Double", "value": 5.0, "timestamp": T0 + 4}], "press-1"),
    msg("DDATA", 5, [{"alias": 9, "type": "Float", "value": 1.0}], "press-2"),
]


async def listen(broker: MosquittoBroker, tmp_path: Path, messages: list[dict]):
    conn = connection_from_url(f"mqtt://127.0.0.1:{broker.port}", "#")
    subscribed = threading.Event()
    listening = asyncio.create_task(asyncio.to_thread(
        discover, conn, seconds=120, max_messages=len(messages), on_subscribed=subscribed.set))
    if not await asyncio.to_thread(subscribed.wait, 60):
        raise AssertionError("discovery did not subscribe")
    await run_edge_node(broker, {"messages": messages}, tmp_path)
    return conn, await listening


async def test_discover_decodes_sparkplug_and_its_yaml_runs_a_gateway(tmp_path: Path) -> None:
    with MosquittoBroker() as broker:
        conn, found = await listen(broker, tmp_path, MESSAGES)
        spb = found.sparkplug
        assert set(spb.devices) == {(G, NODE, None), (G, NODE, "press-1"), (G, NODE, "press-2")}
        press = spb.devices[(G, NODE, "press-1")]
        assert (press.kinds["DBIRTH"], press.kinds["DDATA"]) == (1, 2)
        power = press.metrics["Power/kW"]
        assert (power.datatype, power.alias, power.values) == ("Double", 1, 3)   # birth + 2 by alias
        assert (press.metrics["Temp"].datatype, press.metrics["Temp"].alias) == ("Int16", 3)
        assert press.metrics["Counts/Total"].values == 2
        assert press.data_rate(found.seconds) > 0 and not press.unresolved_aliases

        table = found.table()
        assert f"{G}/{NODE}/press-1" in table and "DBIRTH 1, DDATA 2" in table
        assert any(line.split()[:4] == ["Power/kW", "Double", "alias", "1"] for line in table.splitlines())
        topic_lines = {line.split()[0]: line for line in table.split("\n\n")[0].splitlines()[1:]}
        assert "sparkplug b DBIRTH: Power/kW, Counts/Total" in topic_lines[f"spBv1.0/{G}/DBIRTH/{NODE}/press-1"]

        out = tmp_path / "devices.yaml"
        assert write_suggestions(found, conn, out) == 2    # the node has only control metrics
        devices = {d["id"]: d for d in yaml.safe_load(out.read_text(encoding="utf-8"))["devices"]}
        assert set(devices) == {"press-1", "press-2"}
        assert devices["press-1"]["connection"]["sparkplug"] == {"group": G, "edge_node": NODE, "device": "press-1"}
        assert devices["press-1"]["connection"]["port"] == broker.port
        assert {s["address"] for s in devices["press-1"]["signals"]} == {m["name"] for m in BIRTH_METRICS}
        # Names that slug alike stay distinct signals.
        assert [s["name"] for s in devices["press-2"]["signals"]] == ["speed", "speed_rpm", "speed_rpm_2"]

        # The suggestion unchanged, with a store: what `shangyun check` and the gateway read.
        cfg = tmp_path / "gw.yaml"
        cfg.write_text(yaml.safe_dump({"gateway": {"store": {"path": str(tmp_path / "gw.db")},
                                                   "flush_interval_s": 0.05},
                                       "devices": list(devices.values())}), encoding="utf-8")
        config = load_config(cfg)
        assert [f for f in check_config(config, resolve=False) if f.level == "error"] == []
        gateway = Gateway(config)
        store = gateway.store
        await gateway.start()
        try:
            await wait_for(lambda: gateway.mqtt is not None and gateway.mqtt.connections
                           and all(c.up for c in gateway.mqtt.connections), "the shared connection subscribed")
            assert len(gateway.mqtt.connections) == 1     # both devices on one connection
            await run_edge_node(broker, {"messages": MESSAGES[:3] + [
                msg("DDATA", 3, [{"alias": 1, "type": "Double", "value": 7.5, "timestamp": T0 + 30}], "press-1"),
                msg("DDATA", 4, [{"alias": 10, "type": "Int32", "value": 42, "timestamp": T0 + 30}], "press-2")]},
                tmp_path)
            await wait_for(lambda: (store.latest("press-1", "power_kw") or None)
                           and store.latest("press-1", "power_kw").value == 7.5, "press-1's value by alias", 90)
            await wait_for(lambda: (store.latest("press-2", "speed_rpm") or None)
                           and store.latest("press-2", "speed_rpm").value == 42, "press-2's value by alias", 90)
            assert store.device("press-1").identity.serial_number == "SN-4711"
        finally:
            await gateway.stop()


async def test_data_without_a_birth_is_listed_and_not_guessed(tmp_path: Path) -> None:
    with MosquittoBroker() as broker:
        conn, found = await listen(broker, tmp_path, [
            msg("DDATA", 17, [{"alias": 1, "type": "Double", "value": 9.0},
                              {"name": "Temp", "type": "Int16", "value": -4}], "press-1")])
        press = found.sparkplug.devices[(G, NODE, "press-1")]
        assert press.unresolved_aliases == {1}
        assert set(press.metrics) == {"Temp"} and press.metrics["Temp"].datatype == "Int16"
        table = found.table()
        assert "no birth seen" in table and "aliases without a birth seen: 1" in table
        out = tmp_path / "devices.yaml"
        assert write_suggestions(found, conn, out) == 1
        [block] = yaml.safe_load(out.read_text(encoding="utf-8"))["devices"]
        assert block["signals"] == [{"name": "temp", "address": "Temp"}]
