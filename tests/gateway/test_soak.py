"""Soak: more MQTT telemetry than the gateway can absorb, a kill -9 in the middle, nothing lost.

50 MQTT clients in another process publish QoS 1 telemetry with distinct payload timestamps
through a real Mosquitto as fast as it takes it. The gateway (`shangyun run`, a real process)
acknowledges a message only after the store committed it, so the broker queues what the gateway
cannot take yet and redelivers what a killed gateway never acknowledged. Every published sample
must be in the store exactly once (the store keeps one sample per device, signal and timestamp:
a redelivered message replaces its own), and no link may be dropped for being busy.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import signal
import subprocess
import sys
import time

import pytest

from edge.model import Quality
from edge.store import Store
from simulator.broker import MosquittoBroker
from tests.bench.bench_gateway import SIGNALS, config_yaml, publish
from tests.gateway.test_end_to_end import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEVICES = 50
MESSAGES = 400          # per device: 20,000 messages, 60,000 samples


def start_gateway(config, log_path) -> subprocess.Popen:
    # The log goes to a file: a pipe nobody reads fills up and blocks the gateway's logging.
    log = open(log_path, "a", encoding="utf-8")
    try:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(config)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    finally:
        log.close()


def good_samples(db: str, start_ns: int) -> int:
    """GOOD samples at or after the first published timestamp (the gateway's own BAD stop
    markers and anything before the run do not count)."""
    try:
        store = Store.open(db, readonly=True)
    except Exception:   # the gateway process has not created the schema yet
        return 0
    try:
        return store.sample_count(since_ns=start_ns, quality=Quality.GOOD)
    finally:
        store.close()


def online_devices(db: str) -> int:
    try:
        store = Store.open(db, readonly=True)
    except Exception:
        return 0
    try:
        return sum(1 for d in store.devices() if d.online)
    finally:
        store.close()


async def test_overload_and_kill_minus_9_lose_nothing(tmp_path):
    db = str(tmp_path / "soak.db")
    expected = DEVICES * MESSAGES * len(SIGNALS)
    with MosquittoBroker() as broker:
        cfg = tmp_path / "soak.yaml"
        cfg.write_text(config_yaml(db, broker.host, broker.port, DEVICES), encoding="utf-8")
        log_path = tmp_path / "gateway.log"
        gw = start_gateway(cfg, log_path)
        publisher = None
        try:
            # Subscribed once, the persistent sessions make the broker keep everything for us.
            await wait_for(lambda: online_devices(db) == DEVICES, "all MQTT devices online", 60)
            # An hour back, clear of the live minute; whole ms, as the payloads carry it.
            start_ns = (time.time_ns() - 3_600_000_000_000) // 1_000_000 * 1_000_000
            publisher = mp.get_context("spawn").Process(
                target=publish, args=(broker.host, broker.port, DEVICES, MESSAGES, start_ns))
            publisher.start()

            # kill -9 once part of the stream is stored: acknowledged = committed, so whatever
            # the dead gateway had in memory is still the broker's to redeliver.
            await wait_for(lambda: good_samples(db, start_ns) > expected // 5,
                           "a fifth of the stream stored", 120)
            gw.kill()
            await asyncio.to_thread(gw.wait, 30)
            at_kill = good_samples(db, start_ns)
            assert at_kill < expected, "the stream ended before the kill: nothing was tested"

            gw = start_gateway(cfg, log_path)
            stored = await wait_for(
                lambda: (n := good_samples(db, start_ns)) >= expected and n, "every sample stored",
                300)
            assert stored == expected

            await asyncio.to_thread(publisher.join, 60)
            assert publisher.exitcode == 0
            gw.send_signal(signal.SIGTERM)
            await asyncio.to_thread(gw.wait, 90)
            assert gw.returncode == 0, log_path.read_text(encoding="utf-8")[-3000:]
        finally:
            if gw.poll() is None:
                gw.kill()
            if publisher is not None and publisher.is_alive():
                publisher.kill()

    store = Store.open(db, readonly=True)
    try:
        assert good_samples(db, start_ns) == expected     # nothing doubled after the stop either
        for d in range(DEVICES):
            for sig in SIGNALS:
                got = [s.ts_ns for s in store.samples(f"dev{d}", sig, start_ns)
                       if s.quality == Quality.GOOD]
                assert len(got) == MESSAGES, (d, sig, len(got))
        # No link dropped for being busy: the only offline records are the clean stop's.
        dropped = [e for e in store.events(kind="offline", limit=100_000)
                   if e.data.get("error") != "gateway stopped"]
        assert dropped == [], dropped[:5]
    finally:
        store.close()
