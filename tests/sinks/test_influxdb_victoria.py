"""The InfluxDB sink against a real VictoriaMetrics (InfluxDB v2 write API) on loopback: an outage
under load loses nothing and doubles nothing; killing the forwarding process mid-drain neither."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from edge import outbox
from edge.forwarder import Forwarder
from edge.model import NS_PER_S
from edge.sinks import make_sink
from edge.store import Store

from .check import stored_rollup_minutes, stored_samples, until
from .conftest import DEVICES
from .load import batch
from .servers import VictoriaMetrics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IDS = [d.id for d in DEVICES]
ROOT = Path(__file__).resolve().parents[2]


def _sink_cfg(vm: VictoriaMetrics, **extra: object) -> dict:
    return {"type": "influxdb", "url": vm.url, "org": "factory", "bucket": "shangyun",
            "token": "t0ken", "site": "test", "retry_min_s": 0.05, "retry_max_s": 0.5, **extra}


def _arrived_samples(vm: VictoriaMetrics) -> Counter:
    out: Counter = Counter()
    for series in vm.export('{__name__="shangyun_quality"}'):
        m = series["metric"]
        for ts in series["timestamps"]:
            out[(m["device"], m["signal"], ts)] += 1
    return out


def _arrived_rollups(vm: VictoriaMetrics) -> dict[tuple[str, int], float]:
    out = {}
    for series in vm.export('{__name__="shangyun_rollup_samples"}'):
        for ts, v in zip(series["timestamps"], series["values"]):
            key = (series["metric"]["device"], ts)
            assert key not in out, f"rollup minute {key} arrived twice"
            out[key] = v
    return out


async def _produce(store: Store, t0: int, stop: asyncio.Event, written: list[int]) -> None:
    k = 0
    while not stop.is_set():
        b = batch(IDS, t0 + k * 2 * NS_PER_S, 8)            # 8 instants 250 ms apart = 2 s
        await asyncio.to_thread(store.write_samples, b)
        written.append(len(b))
        k += 1
        if k % 10 == 0:
            await asyncio.to_thread(store.roll_up, t0 + k * 2 * NS_PER_S)
        await asyncio.sleep(0.02)


async def _until_visible(store: Store, vm: VictoriaMetrics) -> None:
    # VictoriaMetrics makes new rows searchable after an in-memory flush: poll, then compare.
    want_samples = len(stored_samples(store, IDS))
    want_rollups = len(stored_rollup_minutes(store, IDS))
    await until(lambda: len(_arrived_samples(vm)) >= want_samples
                and len(_arrived_rollups(vm)) >= want_rollups, 30,
                "VictoriaMetrics to show every point", every_s=0.5)


def _assert_everything_arrived_once(store: Store, vm: VictoriaMetrics) -> None:
    stored = stored_samples(store, IDS)
    arrived = _arrived_samples(vm)
    assert set(arrived) == set(stored), (len(set(stored) - set(arrived)), len(set(arrived) - set(stored)))
    assert max(arrived.values()) == 1
    assert _arrived_rollups(vm) == stored_rollup_minutes(store, IDS)


async def test_outage_under_load_delivers_every_sample_and_rollup_once(store: Store, victoria) -> None:
    vm = victoria
    t0 = (time.time_ns() - 3600 * NS_PER_S) // (60 * NS_PER_S) * 60 * NS_PER_S
    sink = make_sink(_sink_cfg(vm, max_batch=2000))
    fwd = Forwarder(store, sink, retry_min_s=0.05, retry_max_s=0.5)
    stop_fwd, stop_load = asyncio.Event(), asyncio.Event()
    written: list[int] = []
    fwd_task = asyncio.create_task(fwd.run(stop_fwd))
    load = asyncio.create_task(_produce(store, t0, stop_load, written))
    stat = lambda: outbox.stats(store)[0]  # noqa: E731
    try:
        await until(lambda: stat().sent > 500, 30, "first points delivered")
        vm.stop()
        await until(lambda: stat().last_error is not None and stat().backlog > 20_000, 60,
                    "a backlog building up during the outage")
        outage = stat()
        assert not outage.connected and outage.retried > 0
        stored_at_restart = sum(written)
        vm.start()
        await until(lambda: stat().backlog < 2_000, 120, "the backlog drained")
        # Live data kept being stored (and queued) while the backlog drained.
        assert sum(written) > stored_at_restart
        stop_load.set()
        await load
        store.roll_up(time.time_ns())
        await until(lambda: stat().backlog == 0, 60, "the last rows sent")
        await _until_visible(store, vm)
        _assert_everything_arrived_once(store, vm)
        final = stat()
        assert final.dropped == 0 and final.rejected == 0 and final.connected
        assert final.sent >= sum(written)
    finally:
        stop_load.set()
        stop_fwd.set()
        await asyncio.gather(load, fwd_task, return_exceptions=True)
        await sink.close()


FORWARD_ONLY = """
import asyncio, sys
from edge.forwarder import Forwarder
from edge.sinks import make_sink
from edge.store import Store
cfg = {"type": "influxdb", "url": sys.argv[2], "org": "o", "bucket": "b", "token": "t", "site": "test",
       "max_batch": 500}
async def main():
    store = Store.open(sys.argv[1])
    await Forwarder(store, make_sink(cfg), retry_min_s=0.05, retry_max_s=0.5).run()
asyncio.run(main())
"""


def _forwarder_process(db: Path, vm: VictoriaMetrics) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", FORWARD_ONLY, str(db), vm.url], env=env, cwd=ROOT)


async def test_kill_9_of_the_forwarder_mid_drain_loses_and_doubles_nothing(tmp_path: Path, victoria) -> None:
    vm = victoria
    db = tmp_path / "edge.db"
    t0 = (time.time_ns() - 7200 * NS_PER_S) // (60 * NS_PER_S) * 60 * NS_PER_S
    with Store.open(db) as store:
        for d in DEVICES:
            store.upsert_device(d)
        outbox.register(store, "influxdb")
        for k in range(200):                                  # a backlog: ~17,000 samples
            store.write_samples(batch(IDS, t0 + k * 2 * NS_PER_S, 8))
        store.roll_up(t0 + 200 * 2 * NS_PER_S)
        total = outbox.stats(store)[0].backlog
    reader = lambda: Store.open(db, readonly=True)  # noqa: E731

    def sent() -> int:
        with reader() as r:
            return outbox.stats(r)[0].sent

    proc = _forwarder_process(db, vm)
    try:
        await until(lambda: sent() > 0, 60, "the drain to start")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 0 < sent() < total, "killed before the drain finished"
        proc = _forwarder_process(db, vm)

        def drained() -> bool:
            with reader() as r:
                return outbox.stats(r)[0].backlog == 0
        await until(drained, 120, "the drain to finish after the restart")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with Store.open(db, readonly=True) as store:
        await _until_visible(store, vm)
        _assert_everything_arrived_once(store, vm)
