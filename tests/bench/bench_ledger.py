"""Benchmark: what the evidence ledger costs the store. Prints JSON.

    .venv/bin/python tests/bench/bench_ledger.py [--batches 300] [--devices 200] [--days 30]

Write path: the same batches (500 samples from 50 devices, as the pipeline hands them over) go
to two stores in the same process, one with the ledger and one opened with `ledger_hooks=False`,
alternating batch by batch so that whatever else the machine does hits both alike. Reported:
samples/s and CPU µs per sample of write_samples for each, and the overhead (target: < 15 % of
the store's write CPU). Checkpoints: a store of `--devices` devices with `--days` rolled-up days
each; the first checkpoint seals them all, a steady one after a round of writes seals nothing.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.evidence_key import EvidenceKey
from edge.model import NS_PER_S, DeviceSpec, Sample, SignalSpec
from edge.rollup_layout import FIELDS, MINUTES_PER_DAY
from edge.store import Store

BATCH = 500
DEVICES_PER_BATCH = 50
SIGNALS = ("count_total", "power_kw", "state", "energy_kwh", "temp")
NS_PER_DAY = 86_400 * NS_PER_S


def batches(n: int, start_ns: int) -> list[list[Sample]]:
    """n batches of BATCH samples: every device DEVICES_PER_BATCH reports each signal twice."""
    per_device = BATCH // DEVICES_PER_BATCH
    out = []
    for k in range(n):
        ts0 = start_ns + k * NS_PER_S
        b = []
        for d in range(DEVICES_PER_BATCH):
            for i in range(per_device):
                sig = SIGNALS[i % len(SIGNALS)]
                value = "running" if sig == "state" else float(k * per_device + i)
                b.append(Sample(f"m{d:03d}", sig, ts0 + (i // len(SIGNALS)) * 1000, value))
        out.append(b)
    return out


def write_path(tmp: Path, n: int, compact_every: int | None) -> dict:
    """`compact_every`: batches between compactions, which the gateway's roll-ups run every
    30 s, timed as part of the store's write work (None: the append alone)."""
    work = batches(n, time.time_ns() - 600 * NS_PER_S)
    tag = "c" if compact_every else "a"
    stores = {"ledger": Store.open(tmp / f"ledger-{tag}.db"),
              "no_ledger": Store.open(tmp / f"plain-{tag}.db", ledger_hooks=False)}
    cpu = {k: 0.0 for k in stores}
    wall = {k: 0.0 for k in stores}
    hook = _time_ledger_hook(stores["ledger"])
    try:
        for k in range(n):
            # Alternate which store goes first: the second write of a batch may find caches warm.
            order = list(stores) if k % 2 == 0 else list(reversed(stores))
            for name in order:
                c0, w0 = time.process_time(), time.perf_counter()
                stores[name].write_samples(work[k])
                if compact_every and (k + 1) % compact_every == 0:
                    stores[name].compact()
                cpu[name] += time.process_time() - c0
                wall[name] += time.perf_counter() - w0
    finally:
        for s in stores.values():
            s.close()
    samples = n * BATCH
    out: dict = {name: {"samples_per_s": round(samples / wall[name]),
                        "cpu_us_per_sample": round(cpu[name] / samples * 1e6, 2)}
                 for name in stores}
    out["overhead_cpu_pct"] = round((cpu["ledger"] / cpu["no_ledger"] - 1) * 100, 1)
    out["overhead_wall_pct"] = round((wall["ledger"] / wall["no_ledger"] - 1) * 100, 1)
    # The ledger's own hook timed inside the ledger store's writes: steadier than the
    # difference of two totals on a shared machine.
    out["ledger_hook_cpu_us_per_sample"] = round(hook[0] / samples * 1e6, 2)
    out["ledger_hook_pct_of_store_cpu"] = round(hook[0] / cpu["no_ledger"] * 100, 1)
    out["samples"] = samples
    return out


def _time_ledger_hook(store: Store) -> list[float]:
    spent = [0.0]
    ledger = store._ledger
    inner = ledger.on_samples

    def timed(*args, **kw):
        c0 = time.process_time()
        try:
            return inner(*args, **kw)
        finally:
            spent[0] += time.process_time() - c0
    ledger.on_samples = timed      # type: ignore[method-assign]
    return spent


def checkpoints(tmp: Path, n_devices: int, days: int) -> dict:
    store = Store.open(tmp / "cp.db")
    key = EvidenceKey.load_or_create(tmp)
    rng = np.random.default_rng(1)
    today = time.time_ns() // NS_PER_DAY
    first_day = dt.date(1970, 1, 1) + dt.timedelta(days=int(today - days))
    try:
        t0 = time.perf_counter()
        for d in range(n_devices):
            store.upsert_device(DeviceSpec(f"m{d:03d}", f"M{d}", "modbus", {},
                                           tuple(SignalSpec(s) for s in SIGNALS)))
            for i in range(days):
                arr = np.zeros((len(FIELDS), MINUTES_PER_DAY))
                arr[0] = rng.integers(0, 60, MINUTES_PER_DAY)
                store.write_rollup_day(f"m{d:03d}", first_day + dt.timedelta(days=i), arr)
        # The roll-up has passed every day (what seal_due requires of a final day).
        conn = store._writer()
        with store._wlock:
            conn.executemany("INSERT OR REPLACE INTO rollup_progress (device_id, watermark_ns, "
                             "max_ts_ns) VALUES (?, ?, ?)",
                             [(f"m{d:03d}", today * NS_PER_DAY, today * NS_PER_DAY)
                              for d in range(n_devices)])
        setup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        first = store.checkpoint(key)
        first_s = time.perf_counter() - t0
        for b in batches(20, time.time_ns()):
            store.write_samples(b)
        t0 = time.perf_counter()
        steady = store.checkpoint(key)
        steady_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        check = store.verify_ledger()
        verify_s = time.perf_counter() - t0
    finally:
        store.close()
    return {"devices": n_devices, "days": days, "setup_s": round(setup_s, 2),
            "first_checkpoint_s": round(first_s, 3),
            "first_checkpoint_sealed": first.body["counts"]["sealed_days"],
            "steady_checkpoint_ms": round(steady_s * 1e3, 2),
            "steady_entries_added": steady.head_seq - first.head_seq,
            "verify_ledger_s": round(verify_s, 3), "verify_ok": check.ok,
            "entries": check.entries}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--days", type=int, default=30)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as d:
        tmp = Path(d)
        result = {"python": platform.python_version(), "batch": BATCH,
                  "devices_per_batch": DEVICES_PER_BATCH,
                  "write_append_only": write_path(tmp, args.batches, None),
                  "write_with_compaction": write_path(tmp, args.batches, 100),
                  "checkpoint": checkpoints(tmp, args.devices, args.days),
                  "target": "ledger overhead < 15 % of store write CPU"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
