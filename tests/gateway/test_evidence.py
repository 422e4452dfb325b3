"""The evidence ledger in the running gateway: checkpoints on schedule and at a clean stop,
`shangyun status` showing the key and the chain, and the demo's simulated history showing up as
backfilled from capture times alone (no marker event consulted)."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import time

import paho.mqtt.publish as mqtt_publish
import pytest

from edge.evidence_key import EvidenceKey, display_fingerprint
from edge.model import NS_PER_S
from edge.store import Store
from edge.store.ledger import NS_PER_HOUR
from gateway.config import load_config
from gateway.evidence import data_dir
from gateway.history import backfill
from gateway.onboarding import dump_config
from gateway.runner import Gateway
from gateway.status import device_status, render
from simulator.broker import MosquittoBroker
from tests.gateway.test_end_to_end import wait_for

pytestmark = pytest.mark.integration

TOPIC = "plant/m1/telemetry"


def pending(path: str) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT batches, samples FROM ledger_pending").fetchone()
    finally:
        conn.close()


def write_config(tmp_path, port: int, checkpoint_s: float):
    path = tmp_path / "gw.yaml"
    path.write_text(dump_config({
        "gateway": {"store": {"path": str(tmp_path / "gw.db")},
                    "evidence": {"checkpoint_s": checkpoint_s}},
        "devices": [{"id": "m1", "type": "mqtt",
                     "connection": {"host": "127.0.0.1", "port": port, "topic": TOPIC},
                     "signals": [{"name": "power_kw", "address": "power_kw"}]}]}),
        encoding="utf-8")
    return path


async def publish(broker: MosquittoBroker, value: float) -> None:
    await asyncio.to_thread(mqtt_publish.single, TOPIC, json.dumps({"power_kw": value}), qos=1,
                            hostname=broker.host, port=broker.port)


async def test_the_gateway_checkpoints_on_schedule_and_at_stop(tmp_path):
    with MosquittoBroker() as broker:
        gateway = Gateway(load_config(write_config(tmp_path, broker.port, checkpoint_s=0.3)))
        store = gateway.store
        await gateway.start()
        try:
            await wait_for(lambda: store.device("m1").online, "m1 online")
            await publish(broker, 1.5)
            await wait_for(lambda: store.sample_count(device_id="m1") >= 1, "a sample stored")
            await wait_for(lambda: (c := store.last_checkpoint()) is not None and c.seq >= 2
                           and c.body["counts"]["samples_total"] >= 1, "two checkpoints")
            await publish(broker, 2.5)
            await wait_for(lambda: store.sample_count(device_id="m1") >= 2, "a second sample")
            running = store.last_checkpoint().seq
        finally:
            await gateway.stop()
    key = EvidenceKey.load_or_create(data_dir(store))
    with Store.open(tmp_path / "gw.db") as s:
        last = s.last_checkpoint()
        assert last.seq > running
        # The stop checkpoint covers everything: nothing is left pending, the chain ends at it.
        assert s.ledger_head()[0] == last.head_seq
        assert pending(s.path) == (0, 0)
        total = sum(e.body["samples"] for e in s.ledger_entries() if e.kind == "samples")
        assert total == last.body["counts"]["samples_total"] >= 2
        assert last.key_fingerprint == key.fingerprint
        check = s.verify_ledger(key.public_pem)
        assert check.ok, check.problems
    with Store.open(tmp_path / "gw.db", readonly=True) as r:
        status = device_status(r)
    ev = status["evidence"]
    assert ev["key"] == key.fingerprint and ev["chain_length"] == last.head_seq
    assert ev["checkpoints"] == last.seq and ev["last_checkpoint"] is not None
    assert f"evidence: key {display_fingerprint(key.fingerprint)}, chain " in render(status)


def test_status_of_a_store_without_a_key_says_so(tmp_path):
    with Store.open(tmp_path / "s.db") as s:
        status = device_status(s)
    assert status["evidence"]["key"] is None and status["evidence"]["chain_length"] == 0
    assert "evidence: key none yet, chain 0 entries, no checkpoint yet" in render(status)


def test_the_demo_history_is_backfilled_in_the_capture_records(tmp_path):
    days = 30
    path = tmp_path / "gateway.yaml"
    path.write_text(dump_config({"gateway": {"store": {"path": "demo.db"}}, "devices": [
        {"id": "m01", "type": "modbus", "profile": "sim-modbus",
         "connection": {"host": "127.0.0.1", "port": 502}}]}), encoding="utf-8")
    config = load_config(path)
    end = time.time()
    asyncio.run(backfill(config, start_ts=end - days * 86_400, end_ts=end, machines=1, seed=1))
    captured_from = int(end * NS_PER_S)
    with Store.open(config.store_path) as s:
        hours = s.capture_hours("m01")
        assert len(hours) >= days * 24
        total = sum(h.samples for h in hours.values())
        assert total == s.sample_count(device_id="m01")
        # Everything whose source hour ended more than an hour before it was captured.
        old = {hour: h for hour, h in hours.items()
               if (hour + 2) * NS_PER_HOUR <= captured_from}
        assert old and all(h.backfilled == h.samples for h in old.values())
        assert all(h.first_capture_ns >= captured_from for h in hours.values())
        assert sum(h.backfilled for h in hours.values()) >= total * (days * 24 - 2) / (days * 24)
        # And the seals of the history's days say so as well.
        s.checkpoint(EvidenceKey.load_or_create(tmp_path))
        seals = [e.body for e in s.ledger_entries() if e.kind == "rollup"]
        first_whole = (dt.datetime.fromtimestamp(end - (days - 1) * 86_400, dt.timezone.utc)
                       .date().isoformat())
        # Days that ended more than backfill_after_s (+ slack) before the history was written.
        last_old = (dt.datetime.fromtimestamp(end - 3 * 3600, dt.timezone.utc).date()
                    - dt.timedelta(days=1)).isoformat()
        whole = [b for b in seals if first_whole <= b["day"] <= last_old]
        assert len(whole) >= days - 2
        assert all(b["samples"] == b["backfilled"] > 0 for b in whole)
