"""Status that tells the truth, from another process too: rates in arrival time (a replayed
backlog with old timestamps is arriving, not idle), and each device's counters — payload errors,
rejected samples by reason, reconnects — in `shangyun status --json`, the API's data and the page's.
Real Mosquitto, a real gateway, the real CLI in a subprocess."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest

from gateway.config import load_config
from gateway.runner import Gateway
from gateway.status import device_status
from simulator.broker import MosquittoBroker
from tests.gateway.mqtt_device import write_mqtt_config
from tests.gateway.test_end_to_end import wait_for

pytestmark = pytest.mark.integration

TOPIC = "plant/m1/telemetry"


def write_config(tmp_path, port: int):
    return write_mqtt_config(tmp_path, port, topic=TOPIC,
                             signals=["power_kw", "count_total", "note"])


def publisher(port: int) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="status-test-pub")
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


async def replay_backlog(pub: mqtt.Client, seconds: float, each_round=None) -> int:
    """Publish a backlog stamped two hours ago, ~200 messages/s for `seconds`; returns its first
    timestamp (ms). `each_round` is called after every 20 messages."""
    old_ms = (time.time_ns() // 1_000_000) - 2 * 3_600_000
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        for _ in range(20):
            pub.publish(TOPIC, json.dumps({"ts": old_ms + i, "power_kw": 5.0, "count_total": i,
                                           "note": "ok"}),
                        qos=1)
            i += 1
        await asyncio.sleep(0.1)
        if each_round is not None:
            each_round()
    return old_ms


@pytest.fixture
async def plant(tmp_path):
    """(broker, config path, started gateway, connected publisher) for one MQTT device m1."""
    with MosquittoBroker() as broker:
        cfg = write_config(tmp_path, broker.port)
        gateway = Gateway(load_config(cfg))
        await gateway.start()
        pub = publisher(broker.port)
        try:
            yield broker, cfg, gateway, pub
        finally:
            pub.loop_stop()
            pub.disconnect()
            await gateway.stop()


def cli_status(cfg) -> dict:
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "-c", str(cfg), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def row(status: dict) -> dict:
    (r,) = [d for d in status["devices"] if d["id"] == "m1"]
    return r


async def test_backlog_arrival_rate_and_counters_are_shown_in_every_reader(plant):
    broker, cfg, gateway, pub = plant
    store = gateway.store
    await wait_for(lambda: store.device("m1").online, "m1 online")
    # A backlog replayed from two hours ago, for longer than two status writes.
    old_ms = await replay_backlog(pub, 12)
    for bad in (b"{not json", b'{"ts": %d, "power_kw": "fast"}' % old_ms, b"\xff"):
        pub.publish(TOPIC, bad, qos=1).wait_for_publish(10)
    # Valid JSON, but text SQLite cannot store (a lone surrogate): dead-lettered.
    pub.publish(TOPIC, b'{"ts": %d, "note": "\\ud800"}' % old_ms, qos=1).wait_for_publish(10)
    await wait_for(lambda: row(device_status(store))["rejected_total"] >= 1,
                   "the poison counted as rejected")
    # While the backlog arrived: counted in arrival time, though its data time is old.
    seen = await wait_for(lambda: (r := row(device_status(store)))["payload_errors"] == 3
                          and r, "payload errors in the status")
    assert seen["data_samples_per_s"] == 0      # nothing stamped in the last minute
    broker.stop()
    broker.start()
    await wait_for(lambda: row(device_status(store))["reconnects"] == 1, "a reconnect")
    other = row(cli_status(cfg))                 # another process reads the same truth
    assert other["payload_errors"] == 3 and other["reconnects"] == 1
    assert other["rejected_total"] == 1
    (reason,) = other["rejected"]
    assert "surrogate" in reason or "Unicode" in reason or "encod" in reason, reason


async def test_a_replayed_backlog_shows_its_arrival_rate(plant):
    _, _, gateway, pub = plant
    rates = []
    await wait_for(lambda: gateway.store.device("m1").online, "m1 online")

    def sample_rates() -> None:
        st = device_status(gateway.store)
        rates.append((st["samples_per_s"], st["data_samples_per_s"]))
    await replay_backlog(pub, 14, each_round=sample_rates)
    assert any(arrival > 10 for arrival, _ in rates), rates     # ~200 samples/s were arriving
    assert all(data == 0 for _, data in rates)                  # none of them stamped recently
