"""Benchmark: the store's CPU per sample on the MQTT telemetry workload. Prints JSON.

    .venv/bin/python tests/bench/bench_store_write.py [--samples 300000] [--rollup-every 100000]
        [--reference DIR]

The workload of tests/bench/bench_mqtt.py: 50 devices x 10 signals (a `state` string, counters
as ints, readings as floats, as the MQTT mapper makes them), one message per device per second,
write_samples in batches of 500 (one message of every device). Compaction and roll-ups run as
the gateway runs them: `roll_up` (which compacts first) every `--rollup-every` samples with the
gateway's 90 s lag, and the store's own compaction when `--compact-after` samples wait.

Reported, CPU (process time) µs per sample, each part without the parts nested in it:
  * write: write_samples (validation, grouping, series ids, codec, SQL, rollup bookkeeping);
  * ledger: the evidence ledger's hook inside write_samples (batch digest, capture stats);
  * compact: Store.compact, wherever it is called from (write_samples or roll_up);
  * roll_up: Store.roll_up without its compaction;
  * validate: the per-sample check_sample loop alone (part of write; what checked=True skips).

Baselines in the same run:
  * raw_executemany: the same batches' `recent` rows (blobs encoded beforehand) inserted with
    one executemany per batch in a WAL database: the SQL floor of the append;
  * reference: with `--reference DIR` (a checkout of another revision, e.g. from
    `git archive`), this same workload run in a subprocess importing that checkout's code.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from itertools import accumulate
from pathlib import Path
from typing import Any, Callable, Iterator

# The code under test: this worktree, or the one a --reference run points at.
sys.path.insert(0, os.environ.get("BENCH_CODE_ROOT", str(Path(__file__).resolve().parents[2])))

from edge.model import NS_PER_S, Quality, Sample  # noqa: E402
from edge.store import Store, check_sample  # noqa: E402

FIELDS = ("state", "count_total", "count_good", "count_reject", "power_kw", "energy_kwh",
          "temp_c", "speed_rpm", "pressure_bar", "seq")
DEVICES = 50
BATCH = 500
LAG_S = 90          # the gateway's rollup_lag_s
T0_NS = 1_767_225_600 * NS_PER_S      # 2026-01-01T00:00Z


def message(device: int, i: int, ts: int) -> list[Sample]:
    """One device's 10 samples of message i, with the types bench_mqtt's payload maps to."""
    dev = f"m{device:03d}"
    k = i + device * 7
    state = "idle" if k % 600 < 60 else "running"
    values = (state, k, k - k // 50, k // 50, 10.0 + k % 7 / 4, k * 0.01, 40.0 + k % 13 / 10,
              1200 + k % 100, 5.0 + (k % 9) / 10, i)
    return [Sample(dev, f, ts, v, Quality.GOOD) for f, v in zip(FIELDS, values)]


def workload(n_samples: int) -> list[list[Sample]]:
    per_batch = BATCH // len(FIELDS)
    assert per_batch == DEVICES, "a batch is one message of every device"
    out = []
    for i in range(n_samples // BATCH):
        ts = T0_NS + i * NS_PER_S
        out.append([s for d in range(DEVICES) for s in message(d, i, ts)])
    return out


class Clock:
    """CPU time per named section, each without the sections nested in it."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self._stack: list[list[float]] = []     # [start, time of nested sections]

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        frame = [time.process_time(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            total = time.process_time() - frame[0]
            self.spent[name] = self.spent.get(name, 0.0) + total - frame[1]
            if self._stack:
                self._stack[-1][1] += total

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.section(name):
                return fn(*args, **kwargs)
        return timed


def run_store(batches: list[list[Sample]], path: Path, rollup_every: int,
              compact_after: int) -> dict[str, Any]:
    clock = Clock()
    store = Store.open(path)
    store.compact_after = compact_after
    # Instance attributes: write_samples and roll_up reach them through `self`.
    store.compact = clock.wrap("compact", store.compact)          # type: ignore[method-assign]
    assert store._ledger is not None
    store._ledger.on_samples = clock.wrap("ledger", store._ledger.on_samples)  # type: ignore[method-assign]
    written = since_rollup = 0
    try:
        for batch in batches:
            with clock.section("write"):
                store.write_samples(batch)
            written += len(batch)
            since_rollup += len(batch)
            if since_rollup >= rollup_every:
                since_rollup = 0
                with clock.section("roll_up"):
                    store.roll_up(batch[-1].ts_ns - LAG_S * NS_PER_S)
        stored = store.sample_count()
    finally:
        store.close()
    assert stored == written, (stored, written)
    c0 = time.process_time()
    for batch in batches:
        for i, s in enumerate(batch):
            check_sample(i, s)
    clock.spent["validate"] = time.process_time() - c0
    us = {k: round(v / written * 1e6, 3) for k, v in clock.spent.items()}
    us["total"] = round(sum(v for k, v in us.items() if k != "validate"), 3)
    return {"samples": written, "cpu_us_per_sample": us}


def run_raw(batches: list[list[Sample]], path: Path) -> float:
    """CPU µs per sample of inserting the batches' recent rows, encoded beforehand."""
    from edge.store import codec

    rows = []
    for batch in batches:
        per: dict[str, list[Sample]] = {}
        for s in batch:
            per.setdefault(s.device_id, []).append(s)
        whole = [s for ss in per.values() for s in ss]
        block = codec.from_columns([s.ts_ns for s in whole], [s.value for s in whole],
                                   [int(s.quality) for s in whole], list(range(1, len(whole) + 1)))
        ends = list(accumulate(len(ss) for ss in per.values()))
        if hasattr(codec, "encode_parts"):
            blobs = codec.encode_parts(block, ends)
        else:       # a reference checkout from before it
            blobs = [codec.encode(part) for part in codec.split(block, ends)]
        rows.append([(d, ss[0].ts_ns, ss[-1].ts_ns, len(ss), blob)
                     for (d, ss), blob in zip(per.items(), blobs)])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE recent (id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, "
                 "min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL, n INTEGER NOT NULL, "
                 "data BLOB NOT NULL)")
    c0 = time.process_time()
    for r in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO recent (device_id, min_ts, max_ts, n, data) "
                         "VALUES (?, ?, ?, ?, ?)", r)
        conn.execute("COMMIT")
    spent = time.process_time() - c0
    conn.close()
    return round(spent / sum(len(b) for b in batches) * 1e6, 3)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    batches = workload(args.samples)
    with tempfile.TemporaryDirectory(prefix="bench-store-write-") as d:
        store = run_store(batches, Path(d) / "store.db", args.rollup_every, args.compact_after)
        raw = run_raw(batches, Path(d) / "raw.db")
    return {"store": store, "baseline_raw_executemany_cpu_us_per_sample": raw}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=300_000)
    ap.add_argument("--rollup-every", type=int, default=100_000,
                    help="samples written between roll-ups (the gateway: every 30 s)")
    ap.add_argument("--compact-after", type=int, default=1_000_000,
                    help="the store's automatic compaction threshold (its default)")
    ap.add_argument("--reference", help="a checkout to run the same workload with, in a subprocess")
    ap.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)   # the subprocess's output
    args = ap.parse_args()
    result = measure(args)
    if args.raw:
        print(json.dumps(result))
        return
    out: dict[str, Any] = {
        "benchmark": "store_write_mqtt_workload",
        "machine": {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                    "cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)},
        "workload": {"devices": DEVICES, "signals": len(FIELDS), "batch": BATCH,
                     "rollup_every": args.rollup_every, "compact_after": args.compact_after},
        **result}
    if args.reference:
        cmd = [sys.executable, __file__, "--raw", "--samples", str(args.samples),
               "--rollup-every", str(args.rollup_every), "--compact-after", str(args.compact_after)]
        env = {**os.environ, "BENCH_CODE_ROOT": str(Path(args.reference).resolve()),
               "PYTHONPATH": str(Path(args.reference).resolve())}
        ref = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True,
                                        text=True).stdout)
        out["reference"] = {"dir": args.reference, **ref}
        mine, theirs = out["store"]["cpu_us_per_sample"], ref["store"]["cpu_us_per_sample"]
        out["total_vs_reference"] = round(mine["total"] / theirs["total"], 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
