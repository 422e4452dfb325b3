"""Hostile payloads through a real Mosquitto: each is a counted payload error, is never stored,
and the good messages behind it are all stored on the same link."""
from __future__ import annotations

import asyncio
import dataclasses
import time
import json

import paho.mqtt.client as mqtt
import pytest

from connectors.mqtt.config import FieldPath
from edge.model import Quality, SignalSpec
from edge.store import Store
from tests.connectors.mqtt_rig import DEVICE_ID, TOPIC, rig_device, running
from tests.connectors.servers import eventually

# An hour back: recent enough for the plausible-timestamp window, clear of the live minute.
T0_MS = (time.time_ns() // 1_000_000 // 1000 - 3600) * 1000


class Publisher:
    def __init__(self, port: int, protocol: int = mqtt.MQTTv311):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-limits-pub", protocol=protocol)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, *payloads: bytes) -> None:
        for info in [self.client.publish(TOPIC, p, qos=1) for p in payloads]:
            info.wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def good(i: int, **extra) -> bytes:
    return json.dumps({"ts": T0_MS + i, "n": i, **extra}).encode()


@pytest.fixture
def publisher(broker):
    p = Publisher(broker.port)
    yield p
    p.close()


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "limits.db")
    yield s
    s.close()


def stored(store: Store, signal: str = "count_total") -> list:
    return store.samples(DEVICE_ID, signal)


async def test_deeply_nested_json_is_a_payload_error_and_the_messages_behind_it_are_stored(
        broker, publisher, store):
    spec = rig_device(broker.port, client_id="t-deep")
    async with running(spec, store) as (sup, rec):
        await eventually(lambda: rec.online, what="online")
        await asyncio.to_thread(publisher.send, b"[" * 100_000, *(good(i) for i in range(20)))
        await eventually(lambda: len(stored(store)) == 20, what="the 20 good messages stored")
        assert sup.payload_errors == 1
        assert rec.offline == [] and sup.reconnects == 0  # the link was never treated as broken
        await eventually(lambda: sup.source.in_flight == 0, what="the poison message acknowledged too")
    assert [s.value for s in stored(store)] == list(range(20))
    [event] = store.events(kind="payload_error")
    assert "nested deeper than 32" in event.data["error"]


async def test_nesting_deeper_than_the_limit_refuses_the_message(broker, publisher, store):
    deep = {"n": 7}
    for _ in range(40):
        deep = {"x": deep}
    spec = rig_device(broker.port, client_id="t-depth", max_json_depth=32)
    async with running(spec, store) as (sup, rec):
        await eventually(lambda: rec.online, what="online")
        await asyncio.to_thread(publisher.send, json.dumps({"n": 1, "deep": deep}).encode(), good(2))
        await eventually(lambda: len(stored(store)) == 1, what="the good message stored")
        assert sup.payload_errors == 1
    assert [s.value for s in stored(store)] == [2]


@pytest.mark.parametrize(("protocol", "tell_broker"), [("5", False), ("3.1.1", False), ("5", True)])
async def test_oversized_payloads_are_refused_never_stored_and_the_link_holds(
        broker, publisher, store, protocol, tell_broker):
    """max_payload_bytes 1000: five 200 KB payloads and one of 1,500 bytes, then good ones. Each
    big one is a payload error, acknowledged (receive_maximum 2 would stall otherwise) and never
    stored. Told the limit (MQTT 5 Maximum Packet Size, with room for the header), the broker
    does not even send the 200 KB ones; the 1,500-byte one still arrives and is refused here."""
    spec = rig_device(broker.port, client_id=f"t-size-{protocol}-{tell_broker}", protocol=protocol,
                      max_payload_bytes=1000, send_maximum_packet_size=tell_broker,
                      # Mosquitto 2.0.11 holds an in-flight slot for each message it drops as too
                      # large (the reason send_maximum_packet_size is off by default).
                      receive_maximum=100 if tell_broker else 2)
    big = good(-1, label="x" * 200_000)
    near = good(-2, pad="y" * 1500)
    async with running(spec, store) as (sup, rec):
        await eventually(lambda: rec.online, what="online")
        await asyncio.to_thread(publisher.send, *[big] * 5, near, *(good(i) for i in range(10)))
        await eventually(lambda: len(stored(store)) == 10, what="the 10 good messages stored")
        assert rec.offline == []
        if tell_broker:
            assert (sup.source.messages, sup.payload_errors) == (11, 1)  # the big ones never came
        else:
            assert (sup.source.messages, sup.payload_errors) == (16, 6)
        await eventually(lambda: sup.source.in_flight == 0, what="everything acknowledged")
    assert [s.value for s in stored(store)] == list(range(10))
    assert stored(store, "label") == []
    [event] = store.events(kind="payload_error")
    assert "exceeds max_payload_bytes 1000" in event.data["error"]


async def test_a_string_longer_than_the_limit_is_a_bad_field_never_stored(broker, publisher, store):
    spec = rig_device(broker.port, client_id="t-string")  # max_string_chars defaults to 256
    async with running(spec, store) as (sup, rec):
        await eventually(lambda: rec.online, what="online")
        await asyncio.to_thread(publisher.send, good(1, label="L" * 257), good(2, label="ok"))
        await eventually(lambda: len(stored(store)) == 2, what="both messages' counts stored")
        assert sup.payload_errors == 1
    labels = stored(store, "label")
    assert [(s.value, s.quality) for s in labels] == [("", Quality.BAD), ("ok", Quality.GOOD)]
    assert [s.value for s in stored(store)] == [1, 2]
    [event] = store.events(kind="payload_error")
    assert "longer than max_string_chars 256" in event.data["error"]


async def test_a_signal_whose_path_never_matches_is_reported_once(broker, publisher, store):
    """A typo in a field path (`n` published, `count_totl` configured) leaves a tile empty
    forever; after `unmatched_warn_after` payloads the gateway says which signal it is."""
    spec = rig_device(broker.port, client_id="t-unmatched", unmatched_warn_after=20)
    spec = dataclasses.replace(spec, signals=spec.signals + (
        SignalSpec("note", address=FieldPath("lable")),))
    async with running(spec, store) as (sup, rec):
        await eventually(lambda: rec.online, what="online")
        await asyncio.to_thread(publisher.send, *(good(i, label="x") for i in range(50)))
        await eventually(lambda: len(stored(store)) == 50, what="all counts stored")
    events = [e for e in store.events(kind="payload_error") if "matched nothing" in e.data["error"]]
    assert len(events) == 1, [e.data for e in store.events(kind="payload_error")]
    assert "signal note: path 'lable' matched nothing in 20 payloads" in events[0].data["error"]
