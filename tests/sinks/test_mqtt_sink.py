"""The upstream MQTT sink against a second, real Mosquitto: JSON, QoS 1, counted as sent on PUBACK;
an outage between the edge and the central broker under load loses nothing."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter

import paho.mqtt.client as paho
import pytest

from edge import outbox
from edge.forwarder import Forwarder
from edge.model import NS_PER_S, Quality, Sample
from edge.sinks import Batch, make_sink
from edge.errors import RetryableSinkError
from edge.store import Store
from simulator.broker import MosquittoBroker
from simulator.ports import free_port

from .check import MS, stored_rollup_minutes, stored_samples, until
from .conftest import DEVICES
from .load import batch
from .proxy import CuttableProxy
from .servers import ConfiguredMosquitto

pytestmark = pytest.mark.integration

IDS = [d.id for d in DEVICES]


class Consumer:
    """The central side: subscribes to everything the edge publishes and keeps it."""

    def __init__(self, port: int, *, persistent: bool = False) -> None:
        self.samples: Counter = Counter()
        self.rollups: dict[tuple[str, int], float] = {}
        self.rollup_messages: Counter = Counter()
        self.docs: list[dict] = []
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        # persistent: the broker keeps the subscription and queues for it while it is away.
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="central-consumer",
                                  clean_session=not persistent)
        self.client.on_connect = lambda c, *a: c.subscribe("shangyun/#", qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, client: object, userdata: object, msg: paho.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        with self._lock:
            self.docs.append({"topic": msg.topic, **doc})
            for s in doc.get("samples", []):
                self.samples[(doc["device"], s["signal"], s["ts_ns"] // MS)] += 1
            for r in doc.get("rollups", []):
                key = (doc["device"], r["ts_ns"] // MS)
                self.rollups[key] = r["samples"]
                self.rollup_messages[key] += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def central():
    with MosquittoBroker() as broker:
        consumer = Consumer(broker.port)
        yield broker, consumer
        consumer.close()


def _cfg(port: int, **extra: object) -> dict:
    return {"type": "mqtt", "broker": f"mqtt://127.0.0.1:{port}", "site": "plant-a",
            "retry_min_s": 0.05, "retry_max_s": 1, "ack_timeout_s": 5, **extra}


async def test_messages_are_json_on_the_configured_topics(store: Store, central) -> None:
    broker, consumer = central
    sink = make_sink(_cfg(broker.port, max_batch=100))
    await until(lambda: sink.connected, 10, "the sink to connect")
    try:
        await sink.send(Batch([Sample("m00", "power_kw", 5 * MS, float("nan"), Quality.BAD),
                               Sample("m00", "state", 6 * MS, "running", Quality.GOOD)]))
        await until(lambda: len(consumer.docs) == 1, 10, "the message")
    finally:
        await sink.close()
    (doc,) = consumer.docs
    assert doc["topic"] == "shangyun/plant-a/m00"
    assert doc["samples"] == [
        {"signal": "power_kw", "ts_ns": 5 * MS, "value": None, "quality": "bad"},
        {"signal": "state", "ts_ns": 6 * MS, "value": "running", "quality": "good"}]


async def test_not_connected_is_retryable() -> None:
    sink = make_sink(_cfg(free_port()))
    try:
        with pytest.raises(RetryableSinkError, match="not connected"):
            await sink.send(Batch([Sample("m00", "x", 1, 1.0, Quality.GOOD)]))
    finally:
        await sink.close()


async def _outage_under_load(store: Store, consumer: Consumer, port: int,
                             go_down, come_back) -> None:
    """Load, outage, recovery, drain: every sample and rollup minute reaches the consumer."""
    sink = make_sink(_cfg(port, max_batch=1000))
    fwd = Forwarder(store, sink, retry_min_s=0.05, retry_max_s=0.5)
    stop_fwd, stop_load = asyncio.Event(), asyncio.Event()
    t0 = (time.time_ns() - 3600 * NS_PER_S) // (60 * NS_PER_S) * 60 * NS_PER_S
    written: list[int] = []

    async def produce() -> None:
        k = 0
        while not stop_load.is_set():
            b = batch(IDS, t0 + k * 2 * NS_PER_S, 8)
            await asyncio.to_thread(store.write_samples, b)
            written.append(len(b))
            k += 1
            if k % 10 == 0:
                await asyncio.to_thread(store.roll_up, t0 + k * 2 * NS_PER_S)
            await asyncio.sleep(0.02)

    fwd_task = asyncio.create_task(fwd.run(stop_fwd))
    load = asyncio.create_task(produce())
    stat = lambda: outbox.stats(store)[0]  # noqa: E731
    try:
        await until(lambda: stat().sent > 500, 30, "first messages acknowledged")
        await go_down()
        await until(lambda: stat().last_error is not None and stat().backlog > 10_000, 60,
                    "a backlog building up during the outage")
        assert not stat().connected
        at_restore = sum(written)
        await come_back()
        await until(lambda: stat().backlog < 2_000, 120, "the backlog drained")
        assert sum(written) > at_restore                 # live data kept flowing meanwhile
        stop_load.set()
        await load
        store.roll_up(time.time_ns())
        await until(lambda: stat().backlog == 0, 60, "the last rows sent")
        stored = stored_samples(store, IDS)
        rollups = stored_rollup_minutes(store, IDS)
        await until(lambda: len(consumer.samples) >= len(stored) and len(consumer.rollups) >= len(rollups),
                    30, "every message at the consumer")
    finally:
        stop_load.set()
        stop_fwd.set()
        await asyncio.gather(load, fwd_task, return_exceptions=True)
        await sink.close()
    assert set(consumer.samples) == set(stored)
    assert consumer.rollups == rollups
    # At least once: only what was in flight when the link went down may arrive twice.
    repeated = sum(n - 1 for n in consumer.samples.values())
    assert repeated <= 2 * 1000
    assert stat().rejected == 0 and stat().dropped == 0


async def test_outage_between_edge_and_centre_under_load_loses_nothing(store: Store, central) -> None:
    broker, consumer = central
    proxy = CuttableProxy(broker.port)
    await proxy.start()
    try:
        await _outage_under_load(store, consumer, proxy.port, proxy.cut, proxy.start)
    finally:
        await proxy.cut()


async def test_central_broker_restart_under_load_loses_nothing(store: Store, tmp_path) -> None:
    # simulator.broker.MosquittoBroker keeps no state across a restart, so its subscribers would
    # miss what arrives before they are back: the centre here persists sessions, as a real one does.
    port = free_port()
    conf = (f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
            f"persistence true\npersistence_location {tmp_path}/\n")
    with ConfiguredMosquitto(conf, [port], tmp_path) as broker:
        consumer = Consumer(port, persistent=True)

        async def down() -> None:
            await asyncio.to_thread(broker.stop)

        async def up() -> None:
            await asyncio.to_thread(broker.start)
        try:
            await _outage_under_load(store, consumer, port, down, up)
        finally:
            consumer.close()
