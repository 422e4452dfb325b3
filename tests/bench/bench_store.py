"""Benchmark of the edge store: write throughput and roll-up speed. Prints JSON.

    python tests/bench/bench_store.py [--samples N] [--devices D] [--days K]

Baselines measured in the same run on the same machine:
  * raw_executemany: a plain sqlite3 executemany into an equivalent WAL table, the ceiling for
    what the store's write path (validation, series ids, rollup bookkeeping) can reach;
  * pipeline_store: the same samples through Pipeline + StoreSink (asyncio, worker thread);
  * roll-up: minutes rolled up per second for a history back-fill of D devices × K days, next
    to the pure rollup function on the same samples (so store I/O cost is visible), and reading
    every day record back.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.model import Sample  # noqa: E402
from edge.pipeline import Pipeline  # noqa: E402
from edge.rollup import rollup_minutes  # noqa: E402
from edge.store import Store  # noqa: E402
from edge.store_sink import StoreSink  # noqa: E402

S_NS = 10**9
DAY0_NS = 1_710_028_800 * S_NS
STATES = ("running", "idle", "stopped", "running", "running")


def make_samples(n: int, devices: int = 50, step_s: float = 1.0) -> list[Sample]:
    """n samples round-robin over devices and signals, like a live factory."""
    out = []
    signals = ("count_total", "power_kw", "temperature_c", "state")
    for i in range(n):
        dev, k = i % devices, i // devices
        sig = signals[k % len(signals)]
        t = DAY0_NS + int(k * step_s * S_NS)
        value = STATES[(k // 600) % 5] if sig == "state" else float(k % 1000)
        out.append(Sample(f"d{dev:03d}", sig, t, value))
    return out


def history(devices: int, days: int, step_s: int) -> list[Sample]:
    """A simulated back-fill: every device sends counter and power every step_s, state changes."""
    out = []
    for d in range(devices):
        dev = f"h{d:03d}"
        for k in range(days * 86_400 // step_s):
            t = DAY0_NS + k * step_s * S_NS
            if k % 120 == 0:
                out.append(Sample(dev, "state", t, STATES[(k // 120 + d) % 5]))
            out.append(Sample(dev, "count_total", t, (k * 3) % 65536))
            out.append(Sample(dev, "power_kw", t, 5.0 + (k % 7)))
    return out


def bench_raw(samples: list[Sample], path: Path) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE s (device_id TEXT, signal TEXT, ts_ns INTEGER, value, quality INTEGER,"
                 " PRIMARY KEY (device_id, signal, ts_ns)) WITHOUT ROWID")
    t0 = time.perf_counter()
    for i in range(0, len(samples), 500):
        conn.execute("BEGIN")
        conn.executemany("INSERT OR REPLACE INTO s VALUES (?, ?, ?, ?, ?)",
                         [(s.device_id, s.signal, s.ts_ns, s.value, int(s.quality))
                          for s in samples[i:i + 500]])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return len(samples) / elapsed


def bench_store_direct(samples: list[Sample], path: Path) -> float:
    with Store.open(path) as store:
        t0 = time.perf_counter()
        for i in range(0, len(samples), 500):
            store.write_samples(samples[i:i + 500])
        return len(samples) / (time.perf_counter() - t0)


async def bench_pipeline(samples: list[Sample], path: Path) -> dict:
    with Store.open(path) as store:
        t0 = time.perf_counter()
        async with Pipeline([StoreSink(store)], batch_size=500) as p:
            await p.put_many(samples)
        elapsed = time.perf_counter() - t0
        st = p.stats()
        assert st.written == len(samples), st
        return {"samples_per_s": len(samples) / elapsed, "retries": st.retries}


def bench_rollup(devices: int, days: int, step_s: int, path: Path) -> dict:
    samples = history(devices, days, step_s)
    with Store.open(path) as store:
        for i in range(0, len(samples), 20_000):
            store.write_samples(samples[i:i + 20_000])
        t0 = time.perf_counter()
        device_days = store.roll_up(DAY0_NS + days * 86_400 * S_NS)
        roll_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_read = sum(1 for _ in store.rollup_days())
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_summ = len(store.rollup_day_summaries())
        summ_s = time.perf_counter() - t0
    one = [s for s in samples if s.device_id == "h000"]
    t0 = time.perf_counter()
    rollup_minutes(one, DAY0_NS, days * 1440)
    pure_s = (time.perf_counter() - t0) * devices
    minutes = devices * days * 1440
    return {
        "devices": devices, "days": days, "step_s": step_s, "samples": len(samples),
        "device_days_written": device_days,
        "store_roll_up_s": round(roll_s, 3),
        "store_minutes_per_s": round(minutes / roll_s),
        "store_samples_per_s": round(len(samples) / roll_s),
        "pure_function_minutes_per_s": round(minutes / pure_s),
        "read_day_records_per_s": round(n_read / read_s),
        "read_summaries_per_s": round(n_summ / summ_s),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--devices", type=int, default=30)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--step-s", type=int, default=10)
    args = ap.parse_args()
    samples = make_samples(args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        raw = bench_raw(samples, d / "raw.db")
        direct = bench_store_direct(samples, d / "direct.db")
        pipe = asyncio.run(bench_pipeline(samples, d / "pipe.db"))
        roll = bench_rollup(args.devices, args.days, args.step_s, d / "roll.db")
    print(json.dumps({
        "machine": {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                    "cpus": os.cpu_count()},
        "write": {
            "samples": len(samples),
            "baseline_raw_executemany_per_s": round(raw),
            "store_write_samples_per_s": round(direct),
            "pipeline_store_sink_per_s": round(pipe["samples_per_s"]),
            "pipeline_vs_baseline": round(pipe["samples_per_s"] / raw, 3),
            "pipeline_retries": pipe["retries"],
        },
        "roll_up": roll,
    }, indent=2))


if __name__ == "__main__":
    main()
