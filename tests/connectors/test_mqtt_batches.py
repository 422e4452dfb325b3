"""Batches of readings through the MQTT source and a real Mosquitto: every reading arrives in
order at its own time, a batch over the limit is one payload error and the next message still
counts, and the samples handed on at once stay bounded although one message may hold thousands."""
from __future__ import annotations

import asyncio
import json

import pytest

from connectors.mqtt.source import MAX_BATCH_SAMPLES, MqttSource
from tests.connectors.devices import device
from tests.connectors.test_mqtt_source import Publisher

pytestmark = pytest.mark.integration
T = 1_700_000_000
TOPIC = "f/batch/telemetry"
READINGS = 1000   # per message, the default max_batch_readings
LAST = 10**9      # the sentinel reading after the batches


def source(port: int) -> MqttSource:
    return MqttSource(device("mqtt", {"host": "127.0.0.1", "port": port, "topic": TOPIC, "identity_wait_s": 0,
                                      "timeout_s": 3.0},
                             [{"name": "count_total", "address": "n"}, {"name": "power_kw", "address": "p"}]))


def batch(first: int, n: int = READINGS) -> bytes:
    return json.dumps([{"ts": (T + i) * 1000, "n": i, "p": i / 2} for i in range(first, first + n)]).encode()


async def test_batches_arrive_whole_in_order_and_bounded(broker) -> None:
    src = source(broker.port)
    pub = Publisher(broker.port)
    sizes: list[int] = []
    got = []
    try:
        await src.connect()
        for k in range(4):
            pub.client.publish(TOPIC, batch(k * READINGS), qos=1)
        pub.publish(TOPIC, batch(10**6, READINGS + 1))         # one reading too many: refused whole
        pub.publish(TOPIC, json.dumps({"ts": T * 1000, "n": LAST}).encode())

        async def consume() -> None:
            async for b in src.samples():
                sizes.append(len(b))
                got.extend(b)
                if b.ack is not None:
                    b.ack()
                if any(s.value == LAST for s in b):
                    return

        await asyncio.wait_for(consume(), 30)
    finally:
        await src.close()
        pub.close()
    counts = [s for s in got if s.signal == "count_total"]
    assert [s.value for s in counts] == [*range(4 * READINGS), LAST]
    assert [s.ts_ns for s in counts[:-1]] == [(T + i) * 10**9 for i in range(4 * READINGS)]
    assert src.payload_errors == 1
    assert max(sizes) < MAX_BATCH_SAMPLES + 2 * READINGS     # the cap is checked between messages
