"""Sparkplug B end to end: Eclipse Tahu's edge node (tests/peers/sparkplug) → Mosquitto → the
gateway's shared connection and Sparkplug route → store: values by alias, the birth certificate
as identity evidence, an unconfigured device suggested and its data dead-lettered, a bad payload
dead-lettered, DDEATH offline."""
from __future__ import annotations

import asyncio

import paho.mqtt.publish as mqtt_publish
import pytest
import yaml

from edge import rejects
from gateway.config import load_config
from gateway.runner import Gateway
from simulator.broker import MosquittoBroker
from tests.connectors.sparkplug_rig import run_edge_node
from tests.connectors.test_sparkplug_peer import BIRTH_METRICS, G, NODE, T0, msg, topic
from tests.gateway.test_end_to_end import wait_for

pytestmark = pytest.mark.integration


async def test_sparkplug_through_the_gateway(tmp_path):
    with MosquittoBroker() as broker:
        cfg = tmp_path / "gw.yaml"
        cfg.write_text(yaml.safe_dump({
            "gateway": {"store": {"path": str(tmp_path / "gw.db")}, "flush_interval_s": 0.05},
            "mqtt_brokers": [{"name": "plant", "host": "127.0.0.1", "port": broker.port}],
            "devices": [{"id": "p1", "type": "mqtt", "connection": {
                "broker": "plant", "topic": f"spBv1.0/{G}/+/{NODE}/#", "payload_format": "sparkplug",
                "sparkplug": {"group": G, "edge_node": NODE, "device": "press-1"}},
                "signals": [{"name": "power_kw", "address": "Power/kW"},
                            {"name": "count_total", "address": "Counts/Total"}]}]}), encoding="utf-8")
        gateway = Gateway(load_config(cfg))
        store = gateway.store
        await gateway.start()
        try:
            await wait_for(lambda: gateway.mqtt is not None and all(c.up for c in gateway.mqtt.connections),
                           "the shared connection subscribed")
            await run_edge_node(broker, {"messages": [
                msg("NBIRTH", 0, [{"name": "bdSeq", "type": "UInt64", "value": 1}]),
                msg("DBIRTH", 1, BIRTH_METRICS, "press-1"),
                msg("DBIRTH", 2, [{"name": "Speed", "alias": 9, "type": "Float", "value": 3.5}], "press-2"),
                msg("DDATA", 3, [{"alias": 1, "type": "Double", "value": 4.5, "timestamp": T0 + 3}], "press-1"),
                msg("DDATA", 4, [{"alias": 9, "type": "Float", "value": 1.0}], "press-2"),
            ]}, tmp_path)
            await asyncio.to_thread(mqtt_publish.single, topic("DDATA", "press-1"), b"\x12\xffnot protobuf",
                                    qos=1, hostname=broker.host, port=broker.port)
            await wait_for(lambda: (store.latest("p1", "power_kw") or None) and
                           store.latest("p1", "power_kw").value == 4.5, "p1's value by alias")
            await wait_for(lambda: (store.device("p1").identity or None) and
                           store.device("p1").identity.serial_number == "SN-4711", "the birth as identity")
            await wait_for(lambda: {r.reason for r in store.rejects()} >= {rejects.UNKNOWN_DEVICE,
                                                                           rejects.BAD_SPARKPLUG},
                           "the dead letters written", 90)
            assert any(e.data.get("device_id") == "press-2" or "press-2" in str(e.data)
                       for e in store.events(kind="unconfigured_device", limit=100))
            await run_edge_node(broker, {"messages": [msg("DDEATH", 5, [], "press-1")]}, tmp_path)
            await wait_for(lambda: not store.device("p1").online, "p1 offline after DDEATH", 90)
        finally:
            await gateway.stop()


async def test_a_gateway_that_joined_late_asks_for_a_rebirth_and_then_resolves_aliases(tmp_path):
    with MosquittoBroker() as broker:
        cfg = tmp_path / "gw.yaml"
        cfg.write_text(yaml.safe_dump({
            "gateway": {"store": {"path": str(tmp_path / "gw.db")}, "flush_interval_s": 0.05},
            "mqtt_brokers": [{"name": "plant", "host": "127.0.0.1", "port": broker.port}],
            "devices": [{"id": "p1", "type": "mqtt", "connection": {
                "broker": "plant", "topic": f"spBv1.0/{G}/+/{NODE}/#", "payload_format": "sparkplug",
                "sparkplug": {"group": G, "edge_node": NODE, "device": "press-1"}},
                "signals": [{"name": "power_kw", "address": "Power/kW"}]}]}), encoding="utf-8")
        gateway = Gateway(load_config(cfg))
        store = gateway.store
        await gateway.start()
        try:
            await wait_for(lambda: gateway.mqtt is not None and all(c.up for c in gateway.mqtt.connections),
                           "the shared connection subscribed")
            # The births went out before the gateway was there: only data by alias arrives.
            commands = await run_edge_node(broker, {
                "command_topic": topic("NCMD"), "commands": 1,
                "messages": [msg("DDATA", 17, [{"alias": 1, "type": "Double", "value": 9.0,
                                                "timestamp": T0 + 17}], "press-1")],
                "on_rebirth": [msg("NBIRTH", 0, [{"name": "bdSeq", "type": "UInt64", "value": 4}]),
                               msg("DBIRTH", 1, BIRTH_METRICS, "press-1"),
                               msg("DDATA", 2, [{"alias": 1, "type": "Double", "value": 7.5,
                                                 "timestamp": T0 + 20}], "press-1")],
            }, tmp_path)
            assert [c["payload"]["metrics"][0]["name"] for c in commands] == ["Node Control/Rebirth"]
            await wait_for(lambda: (store.latest("p1", "power_kw") or None) and
                           store.latest("p1", "power_kw").value == 7.5, "the value after the rebirth")
        finally:
            await gateway.stop()
