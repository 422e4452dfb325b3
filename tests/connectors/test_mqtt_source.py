import asyncio
import json

import paho.mqtt.client as mqtt
import pytest

from connectors.mqtt.source import MqttSource
from edge.errors import SourceError
from edge.model import Quality
from tests.connectors.devices import device
from tests.connectors.servers import free_port

T_NS = 1_700_000_000 * 1_000_000_000


class Publisher:
    """A plain paho client playing the machine."""

    def __init__(self, port: int):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-SN-9")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload, *, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, data, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def publisher(broker):
    p = Publisher(broker.port)
    yield p
    p.close()


def machine(port: int, **conn) -> MqttSource:
    return MqttSource(device("mqtt", {"host": "127.0.0.1", "port": port, "topic": "f/m1/telemetry",
                                      "identity_topic": "f/m1/identity", "timeout_s": 3.0, **conn}, [
        {"name": "state", "address": "state"},
        {"name": "power_kw", "address": "data.power"},
        {"name": "count_total", "address": "count_total"},
    ]))


async def take(src: MqttSource, n: int, timeout_s: float = 10.0):
    """The first `n` samples, acknowledging each batch at once (as if stored)."""
    got = []

    async def run():
        async for batch in src.samples():
            got.extend(batch)
            if batch.ack is not None:
                batch.ack()
            if len(got) >= n:
                return

    await asyncio.wait_for(run(), timeout_s)
    return got


async def test_birth_identity_and_telemetry(broker, publisher):
    publisher.publish("f/m1/identity", {"client_id": "sim-SN-9", "serial_number": "SN-9", "vendor": "ACME",
                                        "model": "M7", "firmware": "2.0"}, retain=True)
    src = machine(broker.port)
    try:
        identity = await src.connect()
        assert (identity.client_id, identity.serial_number) == ("sim-SN-9", "SN-9")
        assert identity.details == {"vendor": "ACME", "model": "M7", "firmware": "2.0"}
        assert identity.fingerprint() == "mqtt:SN-9"
        publisher.publish("f/m1/telemetry", {"ts": 1_700_000_000_000, "state": "Running",
                                             "data": {"power": 4.5}, "count_total": 12})
        got = await take(src, 3)
    finally:
        await src.close()
    assert {s.signal: s.value for s in got} == {"state": "running", "power_kw": 4.5, "count_total": 12}
    assert {s.ts_ns for s in got} == {T_NS}
    assert all(s.quality is Quality.GOOD for s in got)


async def test_no_birth_message_means_empty_identity(broker):
    src = machine(broker.port, identity_wait_s=0.2)
    try:
        identity = await src.connect()
    finally:
        await src.close()
    assert identity.fingerprint() == "" and identity.protocol == "mqtt"


async def test_malformed_payload_counted_reported_once_and_source_goes_on(broker, publisher):
    events = []
    src = machine(broker.port, identity_wait_s=0)
    src.on_event = lambda kind, data: events.append((kind, dict(data)))
    try:
        await src.connect()
        publisher.publish("f/m1/telemetry", b"{garbage")
        publisher.publish("f/m1/telemetry", b"[1,2,3]")
        publisher.publish("f/m1/telemetry", {"state": "idle", "data": {"power": None}})
        got = await take(src, 2)
    finally:
        await src.close()
    assert src.payload_errors == 3
    assert [s.value for s in got if s.signal == "state"] == ["idle"]
    assert [s.quality for s in got if s.signal == "power_kw"] == [Quality.BAD]
    assert len(events) == 1  # first one with context; the rest go into the periodic summary
    kind, data = events[0]
    assert kind == "payload_error" and data["topic"] == "f/m1/telemetry" and "not JSON" in data["error"]
    assert "garbage" in data["payload"]


async def test_bounded_queue_backpressure_loses_nothing(broker, publisher):
    src = machine(broker.port, identity_wait_s=0, receive_maximum=2)
    try:
        await src.connect()
        for i in range(40):  # far more than the queue holds while nobody consumes
            publisher.client.publish("f/m1/telemetry", json.dumps({"count_total": i}), qos=1)
        await asyncio.sleep(0)  # the consumer starts only now
        got = await take(src, 40)
    finally:
        await src.close()
    assert [s.value for s in got] == list(range(40))


async def test_unreachable_broker_is_source_error():
    src = machine(free_port())
    with pytest.raises(SourceError, match="cannot connect"):
        await src.connect()
    await src.close()


async def test_broker_gone_raises_source_error(broker, publisher):
    src = machine(broker.port, identity_wait_s=0)
    await src.connect()
    try:
        publisher.publish("f/m1/telemetry", {"count_total": 1})
        await take(src, 1)
        await asyncio.to_thread(broker.stop)
        with pytest.raises(SourceError, match="lost|disconnected"):
            await asyncio.wait_for(take(src, 1), 10)
    finally:
        await src.close()
