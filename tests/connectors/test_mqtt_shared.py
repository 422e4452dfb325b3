"""One broker connection for many devices, through a real Mosquitto and a real Gateway: a topic
template block for 50 machines, devices seen on the template but not configured reported, status
per device on the shared connection, acknowledgements after commit."""
from __future__ import annotations

import asyncio
import json

from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from connectors.mqtt.shared import UNCONFIGURED_DEVICE
from edge.errors import ConfigError
from edge.model import Quality, now_ns
from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.config import load_config
from gateway.status import device_status, render
from gateway.runner import Gateway
from simulator.broker import MosquittoBroker, free_port
from tests.gateway.test_end_to_end import wait_for

pytestmark = pytest.mark.integration

TEMPLATE = "factory/{line}/{device}/telemetry"
SIGNALS = [{"name": "power_kw", "address": "p"}, {"name": "count_total", "address": "n"}]


def config_text(port: int, *, ids: object = "m{01..50}", stale_after_s: float | None = 120.0,
                extra_devices: list[dict] | None = None, identity: bool = False) -> str:
    conn: dict = {"broker": "plant", "topic": TEMPLATE, "stale_after_s": stale_after_s}
    if identity:
        conn |= {"identity_topic": "factory/{line}/{device}/birth", "identity_wait_s": 0.5}
    doc = {
        "gateway": {"store": {"path": "s.db"}, "flush_interval_s": 0.05},
        "mqtt_brokers": [{"name": "plant", "host": "127.0.0.1", "port": port, "timeout_s": 3.0}],
        "devices": [{"ids": ids, "type": "mqtt", "connection": conn, "signals": SIGNALS},
                    *(extra_devices or [])],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gw.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


class Plc:
    """A PLC gateway publishing for many machines over one client, QoS 1."""

    def __init__(self, port: int):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plc-gw-1")
        self.client.max_inflight_messages_set(200)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, doc: object, *, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, json.dumps(doc).encode(), qos=1, retain=retain)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def topic(line: str, dev: str) -> str:
    return f"factory/{line}/{dev}/telemetry"


def count_rows(store, device_id: str, signal: str = "count_total") -> int:
    """Readings stored, each timestamp once (as the store counts: a redelivery is no new reading)."""
    return len({s.ts_ns for s in store.samples(device_id, signal) if s.quality is not Quality.BAD})


async def test_fifty_devices_on_one_connection_and_three_unconfigured_reported(tmp_path):
    with MosquittoBroker() as broker:
        gw = Gateway(load_config(write(tmp_path, config_text(broker.port))))
        store = gw.store
        await gw.start()
        plc = Plc(broker.port)
        try:
            assert len(gw.mqtt.connections) == 1, "one connection for every device naming the broker"
            conn = gw.mqtt.connections[0]
            await wait_for(lambda: conn.up, "the shared connection up")
            base_ms = now_ns() // 1_000_000
            infos = []
            for i in range(5):
                for d in range(1, 51):
                    infos.append(plc.publish(topic(f"L{d % 3}", f"m{d:02d}"),
                                             {"ts": base_ms + i * 10, "p": 1.5 + d, "n": i}))
                for stranger in ("x1", "x2", "x3"):
                    infos.append(plc.publish(topic("L9", stranger), {"ts": base_ms + i * 10, "p": 1, "n": i}))
            for info in infos:
                await asyncio.to_thread(info.wait_for_publish, 10)

            await wait_for(lambda: all(count_rows(store, f"m{d:02d}") == 5 for d in range(1, 51)),
                           "5 readings of each of the 50 machines stored")
            await wait_for(lambda: all(store.device(f"m{d:02d}").online for d in range(1, 51)),
                           "every machine online")
            await wait_for(lambda: len(store.events(kind=UNCONFIGURED_DEVICE)) >= 3, "3 unconfigured reported")
            events = store.events(kind=UNCONFIGURED_DEVICE)
            assert sorted(e.data["device_id"] for e in events) == ["x1", "x2", "x3"], "once per id"
            x1 = next(e.data for e in events if e.data["device_id"] == "x1")
            assert x1["topic"] == topic("L9", "x1")
            assert x1["fields"] == {"line": "L9", "device": "x1"}
            suggested = yaml.safe_load(x1["suggestion"])[0]
            assert suggested["id"] == "x1" and suggested["line"] == "L9"
            assert suggested["connection"] == {"broker": "plant", "topic": TEMPLATE}
            assert suggested["signals"] == SIGNALS
            listed = {u["device_id"]: u for u in gw.mqtt.unconfigured()}
            await wait_for(lambda: listed["x3"]["messages"] == 5, "every message of x3 counted")
            assert conn.rejects["unknown_device"] == 15
            assert store.device("x1") is None, "an unconfigured device is not registered by itself"
            # Acknowledged after commit, per message: nothing left in flight once all is stored.
            await wait_for(lambda: conn.acks.in_flight == 0, "every message acknowledged")
            assert gw.supervisors["m07"].source.time_sources() == {"device": 10, "gateway": 0}

            # Listed for onboarding by `shangyun status` and the API.
            status = await asyncio.to_thread(device_status, store)
            assert [u["device_id"] for u in status["unconfigured"]] == ["x1", "x2", "x3"]
            assert "x2             on factory/L9/x2/telemetry (connection plant)" in render(status)
            with TestClient(create_app(gw.config.store_path)) as http:
                listed_api = http.get("/api/unconfigured").json()
            assert [u["device_id"] for u in listed_api] == ["x1", "x2", "x3"]
            assert listed_api[0]["suggestion"] == x1["suggestion"]
            assert status["online"] == 50
        finally:
            plc.close()
            await gw.stop()


async def test_a_silent_device_goes_offline_and_back_while_the_others_stay_online(tmp_path):
    with MosquittoBroker() as broker:
        text = config_text(broker.port, ids=["a1", "a2"], stale_after_s=1.0)
        gw = Gateway(load_config(write(tmp_path, text)))
        store = gw.store
        await gw.start()
        plc = Plc(broker.port)
        stop = asyncio.Event()

        async def a1_keeps_talking() -> None:
            n = 0
            while not stop.is_set():
                plc.publish(topic("L1", "a1"), {"p": 1.0, "n": n})
                n += 1
                await asyncio.sleep(0.2)

        talker = asyncio.create_task(a1_keeps_talking())
        try:
            await wait_for(lambda: store.device("a1").online, "a1 online")
            assert not store.device("a2").online, "a2 has not published: not online"
            plc.publish(topic("L1", "a2"), {"p": 2.0, "n": 1})
            await wait_for(lambda: store.device("a2").online, "a2 online after its first message")
            await wait_for(lambda: not store.device("a2").online, "a2 offline once silent past stale_after_s")
            assert "stale_after_s" in (store.device("a2").last_error or "")
            assert store.device("a1").online, "a1 kept publishing: still online"
            plc.publish(topic("L1", "a2"), {"p": 2.0, "n": 2})
            # Read from the events: a2 may well be stale again by the time the flag is polled.
            await wait_for(lambda: len(store.events(device_id="a2", kind="online")) == 2,
                           "a2 back online on its next message")
            await wait_for(lambda: count_rows(store, "a2") == 2, "both of a2's readings stored")
            sources = gw.supervisors["a2"].source.time_sources()
            assert sources == {"device": 0, "gateway": 4}, "no ts in the payload: arrival time, recorded as such"
        finally:
            stop.set()
            await talker
            plc.close()
            await gw.stop()


async def test_the_broker_restarting_takes_every_device_offline_once_and_back(tmp_path):
    with MosquittoBroker() as broker:
        gw = Gateway(load_config(write(tmp_path, config_text(broker.port, ids="r{1..3}", stale_after_s=None))))
        store = gw.store
        await gw.start()
        try:
            await wait_for(lambda: all(store.device(f"r{i}").online for i in (1, 2, 3)),
                           "online with the connection (stale_after_s: null)")
            broker.stop()
            await wait_for(lambda: not any(store.device(f"r{i}").online for i in (1, 2, 3)), "all offline")
            broker.start()
            await wait_for(lambda: all(store.device(f"r{i}").online for i in (1, 2, 3)), "all back online",
                           timeout_s=60)
            for i in (1, 2, 3):
                assert len(store.events(device_id=f"r{i}", kind="offline")) == 1, "offline once per outage"
            assert gw.mqtt.connections[0].generation >= 2
        finally:
            await gw.stop()


async def test_a_message_is_acknowledged_only_once_its_samples_are_committed(tmp_path):
    """A message for a device whose supervisor has not taken it yet keeps its ack, and so does
    every message after it (in order); the broker redelivers what was never acknowledged."""
    with MosquittoBroker() as broker:
        gw = Gateway(load_config(write(tmp_path, config_text(broker.port, ids=["k1", "k2"]))))
        store = gw.store
        await gw.start()
        plc = Plc(broker.port)
        try:
            conn = gw.mqtt.connections[0]
            await wait_for(lambda: conn.up, "connected")
            # k1's supervisor is held: its samples wait in its buffer, unacknowledged.
            k1 = gw.supervisors["k1"]
            gw._device_tasks[k1].cancel()
            await wait_for(lambda: gw._device_tasks[k1].done(), "k1's supervisor stopped")
            t0 = now_ns() // 1_000_000_000
            plc.publish(topic("L1", "k1"), {"ts": t0, "p": 1.0, "n": 1})
            for n in range(3):
                plc.publish(topic("L1", "k2"), {"ts": t0 + 1 + n, "p": 2.0, "n": n})
            await wait_for(lambda: count_rows(store, "k2") == 3, "k2 stored")
            await wait_for(lambda: conn.acks.in_flight == 4, "k1's message holds its ack and the later ones")
            assert count_rows(store, "k1") == 0
        finally:
            plc.close()
            await gw.stop()
        # A new gateway on the same persistent session gets the unacknowledged messages again.
        gw2 = Gateway(load_config(write(tmp_path, config_text(broker.port, ids=["k1", "k2"]))))
        await gw2.start()
        try:
            await wait_for(lambda: count_rows(gw2.store, "k1") == 1, "k1's message redelivered and stored")
            assert count_rows(gw2.store, "k2") == 3, "k2's redelivered messages stored once"
        finally:
            await gw2.stop()


async def test_births_on_a_template_become_each_devices_identity(tmp_path):
    with MosquittoBroker() as broker:
        plc = Plc(broker.port)
        for d in ("b1", "b2"):
            plc.publish(f"factory/L1/{d}/birth", {"serial_number": f"SN-{d}"}, retain=True).wait_for_publish(5)
        gw = Gateway(load_config(write(tmp_path, config_text(broker.port, ids=["b1", "b2"], identity=True,
                                                             stale_after_s=None))))
        store = gw.store
        await gw.start()
        try:
            for d in ("b1", "b2"):
                await wait_for(lambda d=d: (rec := store.device(d)) is not None and rec.identity is not None
                               and rec.identity.serial_number == f"SN-{d}", f"{d}'s serial stored")
                assert store.device(d).identity.endpoint.endswith(f"factory/+/{d}/telemetry")
        finally:
            plc.close()
            await gw.stop()


async def test_a_bad_payload_on_the_template_is_counted_for_its_device(tmp_path):
    with MosquittoBroker() as broker:
        gw = Gateway(load_config(write(tmp_path, config_text(broker.port, ids=["e1"]))))
        store = gw.store
        await gw.start()
        plc = Plc(broker.port)
        try:
            await wait_for(lambda: gw.mqtt.connections[0].up, "connected")
            plc.client.publish(topic("L1", "e1"), b"{not json", qos=1)
            plc.publish(topic("L1", "e1"), {"p": 1.0, "n": 3})
            await wait_for(lambda: count_rows(store, "e1") == 1, "the good message stored")
            await wait_for(lambda: gw.supervisors["e1"].payload_errors == 1, "the bad one counted for e1")
            assert gw.mqtt.connections[0].rejects["invalid"] == 1
            await wait_for(lambda: gw.mqtt.connections[0].acks.in_flight == 0, "both acknowledged")
        finally:
            plc.close()
            await gw.stop()


async def test_a_large_payload_between_small_ones_is_read_whole(tmp_path):
    """paho reads the socket in 64 KiB chunks (connectors/mqtt/client.py): a message spanning
    several chunks, and the small ones packed around it, all arrive intact."""
    with MosquittoBroker() as broker:
        gw = Gateway(load_config(write(tmp_path, config_text(broker.port, ids=["g1"]))))
        store = gw.store
        await gw.start()
        plc = Plc(broker.port)
        try:
            await wait_for(lambda: gw.mqtt.connections[0].up, "connected")
            t0 = now_ns() // 1_000_000
            infos = [plc.publish(topic("L1", "g1"), {"ts": t0 + i, "p": 1.0, "n": i}) for i in range(300)]
            big = [{"ts": t0 + 300 + i, "n": 300 + i, "p": 2.0} for i in range(1000)]   # a batch: ~40 kB
            infos.append(plc.publish(topic("L1", "g1"), big * 1))
            infos.append(plc.client.publish(topic("L1", "g1"), json.dumps(
                {"ts": t0 + 2000, "n": 2000, "pad": "x" * 200_000}).encode(), qos=1))
            infos += [plc.publish(topic("L1", "g1"), {"ts": t0 + 3000 + i, "p": 1.0, "n": 3000 + i})
                      for i in range(300)]
            for info in infos:
                await asyncio.to_thread(info.wait_for_publish, 10)
            await wait_for(lambda: count_rows(store, "g1") == 1601, "every reading stored")
        finally:
            plc.close()
            await gw.stop()


async def test_messages_with_mqtt5_properties_and_qos0_are_stored(tmp_path):
    """Telemetry without properties takes the short path past paho's decoder (connectors/mqtt/
    client.py); a message with MQTT 5 properties takes paho's own path; QoS 0 the short one."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    with MosquittoBroker() as broker:
        gw = Gateway(load_config(write(tmp_path, config_text(broker.port, ids=["v1"]))))
        store = gw.store
        await gw.start()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="v5-pub", protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        try:
            await wait_for(lambda: gw.mqtt.connections[0].up, "connected")
            t0 = now_ns() // 1_000_000
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("line", "L1")
            props.MessageExpiryInterval = 3600
            infos = [pub.publish(topic("L1", "v1"), json.dumps({"ts": t0, "n": 1}).encode(), qos=1, properties=props),
                     pub.publish(topic("L1", "v1"), json.dumps({"ts": t0 + 1, "n": 2}).encode(), qos=0),
                     pub.publish(topic("L1", "v1"), json.dumps({"ts": t0 + 2, "n": 3}).encode(), qos=1)]
            for info in infos:
                await asyncio.to_thread(info.wait_for_publish, 10)
            await wait_for(lambda: count_rows(store, "v1") == 3, "all three stored")
        finally:
            pub.loop_stop()
            pub.disconnect()
            await gw.stop()


def test_config_errors_name_the_problem(tmp_path):
    def error(text: str) -> str:
        with pytest.raises(ConfigError) as exc:
            load_config(write(tmp_path, text))
        return str(exc.value)

    base = yaml.safe_load(config_text(1883, ids=["m1"]))
    doc = json.loads(json.dumps(base))
    doc["devices"][0]["connection"]["broker"] = "nope"
    assert "broker 'nope' is not in mqtt_brokers (known: plant)" in error(yaml.safe_dump(doc))
    doc = json.loads(json.dumps(base))
    doc["devices"][0]["connection"]["port"] = 1884
    assert "settings of the broker connection 'plant'" in error(yaml.safe_dump(doc))
    doc = json.loads(json.dumps(base))
    doc["devices"][0]["connection"]["topic"] = "factory/all/telemetry"
    assert "{device} level" in error(yaml.safe_dump(doc))
    doc = json.loads(json.dumps(base))
    doc["mqtt_brokers"][0]["topic"] = "x/#"
    assert "belong to each device's connection" in error(yaml.safe_dump(doc))
    doc = json.loads(json.dumps(base))
    doc["devices"][0]["id"] = "m1"
    assert "not both" in error(yaml.safe_dump(doc))
    loaded = load_config(write(tmp_path, config_text(1883, ids=["a{08..11}", "z"])))
    assert [d.id for d in loaded.devices] == ["a08", "a09", "a10", "a11", "z"]
    assert loaded.devices[0].connection["host"] == "127.0.0.1"


def test_the_per_device_connection_block_is_unchanged(tmp_path):
    text = yaml.safe_dump({"devices": [{"id": "p1", "type": "mqtt", "connection": {
        "host": "127.0.0.1", "topic": "plant/p1/telemetry"}, "signals": SIGNALS}]})
    loaded = load_config(write(tmp_path, text))
    gw = Gateway(loaded)
    try:
        assert type(gw._make_source(loaded.devices[0])).__name__ == "MqttSource"
        assert gw.mqtt is None
    finally:
        gw.store.close()





def test_two_devices_on_one_static_topic_is_a_config_error(tmp_path):
    text = yaml.safe_dump({
        "mqtt_brokers": [{"name": "plant", "host": "127.0.0.1"}],
        "devices": [{"id": d, "type": "mqtt", "connection": {"broker": "plant", "topic": "plant/all/telemetry"},
                     "signals": SIGNALS} for d in ("s1", "s2")]})
    gw = Gateway(load_config(write(tmp_path, text)))
    try:
        gw._make_source(gw.devices[0])
        with pytest.raises(ConfigError, match="device s2: topic 'plant/all/telemetry' has no {device} level"):
            gw._make_source(gw.devices[1])
    finally:
        gw.store.close()


async def test_devices_are_offline_while_the_broker_is_down_at_start_and_online_once_it_is_up(tmp_path):
    port = free_port()      # nobody listening yet
    broker = MosquittoBroker(port=port)
    gw = Gateway(load_config(write(tmp_path, config_text(port, ids=["u1", "u2"], stale_after_s=None))))
    store = gw.store
    await gw.start()
    try:
        await wait_for(lambda: all(store.events(device_id=d, kind="offline") for d in ("u1", "u2")),
                       "both offline while nothing listens")
        assert "cannot connect" in store.device("u1").last_error
        broker.start()
        await wait_for(lambda: all(store.device(d).online for d in ("u1", "u2")), "both online", timeout_s=90)
        assert all(len(store.events(device_id=d, kind="offline")) == 1 for d in ("u1", "u2"))
    finally:
        await gw.stop()
        broker.close()
