"""Disk wear and CPU of the raw-sample write path on a store at steady state. Prints JSON.

    python tests/bench/bench_store_wear.py [--devices 80] [--signals 100] [--seconds 60]

Each store is pre-filled with `--days` of history for every series (a sample every
`--fill-step-s`), so its b-trees are the size of a store that has been running, not a fresh
file. Then a live stream like 80 devices × 100 registers polled every 100 ms (16-bit values, in
batches of 500 spread over the series) is written, and for each layout we report the bytes the
process wrote to disk per stored value (/proc/self/io write_bytes around the run; WAL, the
automatic checkpoints and a final TRUNCATE checkpoint inside the window; `wchar` is the bytes
handed to write(2), an upper bound the page cache cannot fold) and the CPU µs per value
(process_time around the store calls only; generating the samples is not counted).

Layouts, same run:
  * append_chunks: edge.store.Store as shipped (recent blobs, compacted into per-series chunks
    every `--compact-every-s` of stream time, compaction inside the window);
  * clustered: the previous layout reproduced here (WITHOUT ROWID samples keyed by
    (series_id, ts_ns), INSERT OR REPLACE, the same validation and rollup bookkeeping); it is
    slow, so it runs `--baseline-seconds` of the stream (the rates are per value);
  * raw_append: a plain rowid table with no index, one executemany per batch: the floor.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.model import Sample  # noqa: E402
from edge.store import Store, check_sample  # noqa: E402
from edge.store import codec, samples as raw  # noqa: E402

S_NS = 10**9
T0_NS = 1_710_028_800 * S_NS
BATCH = 500
TARGET_BYTES_PER_VALUE = 64
TARGET_CPU_US_PER_VALUE = 3.0


def io_counters() -> dict[str, int]:
    out = {}
    with open("/proc/self/io", encoding="ascii") as f:
        for line in f:
            key, value = line.split(":")
            out[key] = int(value)
    return out


class Stream:
    """80 × 100 registers @ 100 ms: counters that climb, analog values that wander, all 16-bit."""

    def __init__(self, devices: int, signals: int, period_s: float, seed: int = 1) -> None:
        self.keys = [(f"dev{d:03d}", f"reg{s:03d}") for d in range(devices) for s in range(signals)]
        rng = np.random.default_rng(seed)
        self.values = rng.integers(0, 65536, len(self.keys))
        self.is_counter = rng.random(len(self.keys)) < 0.2
        self.rng = rng
        self.period_ns = int(period_s * S_NS)

    def ticks(self, start_ns: int, n: int) -> Iterator[list[list[Sample]]]:
        """Per poll cycle, its samples in batches of BATCH (a device's poll lands a few ms apart)."""
        for k in range(n):
            step = self.rng.integers(-3, 4, len(self.keys))
            self.values = np.where(self.is_counter, self.values + 1, self.values + step) % 65536
            base = start_ns + k * self.period_ns
            vals = self.values.tolist()
            samples = [Sample(d, s, base + (i // 100) * 1_000_000, v)
                       for i, ((d, s), v) in enumerate(zip(self.keys, vals))]
            yield [samples[i:i + BATCH] for i in range(0, len(samples), BATCH)]


def measure(run: Callable[[], tuple[int, float]], db: Path) -> dict:
    before = io_counters()
    values, cpu_s = run()
    after = io_counters()
    written = after["write_bytes"] - before["write_bytes"]
    wchar = after["wchar"] - before["wchar"]
    return {
        "values": values,
        "bytes_written": written,
        "bytes_per_value": round(written / values, 2),
        "wchar_per_value": round(wchar / values, 2),
        "cpu_us_per_value": round(cpu_s / values * 1e6, 3),
        "file_mb": round(db.stat().st_size / 1e6, 1),
    }


# ---------------------------------------------------------------------- the new layout
def fill_chunks(store: Store, keys: list[tuple[str, str]], days: float, step_s: int) -> int:
    n = int(days * 86_400 // step_s)
    ts = T0_NS - days * 86_400 * S_NS + np.arange(n, dtype=np.int64) * step_s * S_NS
    rng = np.random.default_rng(2)
    kq = np.full(n, codec.INT << 2, dtype=np.uint8)
    conn = store._writer()
    with store._wlock:
        conn.execute("BEGIN")
        for d, s in keys:
            sid = store._series_id(conn, d, s)
            bits = rng.integers(0, 65536, n).astype(np.int64)
            raw.write_chunks(conn, sid, codec.Block(ts.astype(np.int64), kq, bits, []))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return n * len(keys)


def run_store(store: Store, stream: Stream, ticks: int, compact_every: int) -> tuple[int, float]:
    cpu = 0.0
    values = 0
    for k, batches in enumerate(stream.ticks(T0_NS, ticks)):
        t = time.process_time()
        for b in batches:
            store.write_samples(b)
            values += len(b)
        if (k + 1) % compact_every == 0:
            store.compact()
        cpu += time.process_time() - t
    t = time.process_time()
    store.compact()
    with store._wlock:
        store._writer().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return values, cpu + time.process_time() - t


# ---------------------------------------------------------------------- the previous layout
_CLUSTERED_SCHEMA = [
    "CREATE TABLE series (id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, signal TEXT NOT NULL, "
    "UNIQUE (device_id, signal))",
    "CREATE TABLE samples (series_id INTEGER NOT NULL, ts_ns INTEGER NOT NULL, value, "
    "is_bool INTEGER NOT NULL DEFAULT 0, quality INTEGER NOT NULL, PRIMARY KEY (series_id, ts_ns)) "
    "WITHOUT ROWID",
    "CREATE INDEX samples_bad ON samples (series_id, ts_ns) WHERE quality = 2",
    "CREATE TABLE rollup_progress (device_id TEXT PRIMARY KEY, watermark_ns INTEGER, "
    "dirty_from_ns INTEGER, max_ts_ns INTEGER NOT NULL, pruned_before_ns INTEGER)",
]
_PROGRESS = """INSERT INTO rollup_progress (device_id, watermark_ns, dirty_from_ns, max_ts_ns)
   VALUES (?, NULL, ?, ?)
   ON CONFLICT (device_id) DO UPDATE SET
     dirty_from_ns = CASE WHEN watermark_ns IS NULL OR excluded.dirty_from_ns < watermark_ns
       THEN min(coalesce(dirty_from_ns, excluded.dirty_from_ns), excluded.dirty_from_ns)
       ELSE dirty_from_ns END,
     max_ts_ns = max(max_ts_ns, excluded.max_ts_ns)"""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def fill_clustered(conn: sqlite3.Connection, keys: list[tuple[str, str]], days: float,
                   step_s: int) -> tuple[dict, int]:
    for sql in _CLUSTERED_SCHEMA:
        conn.execute(sql)
    n = int(days * 86_400 // step_s)
    ts = (T0_NS - int(days * 86_400) * S_NS + np.arange(n, dtype=np.int64) * step_s * S_NS).tolist()
    rng = np.random.default_rng(2)
    ids = {}
    conn.execute("BEGIN")
    for sid, key in enumerate(keys, 1):
        conn.execute("INSERT INTO series (id, device_id, signal) VALUES (?, ?, ?)", (sid, *key))
        ids[key] = sid
        vals = rng.integers(0, 65536, n).tolist()
        conn.executemany("INSERT INTO samples (series_id, ts_ns, value, quality) VALUES (?, ?, ?, 0)",
                         zip([sid] * n, ts, vals))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return ids, n * len(keys)


def run_clustered(conn: sqlite3.Connection, ids: dict, stream: Stream, ticks: int) -> tuple[int, float]:
    cpu = 0.0
    values = 0
    for batches in stream.ticks(T0_NS, ticks):
        t = time.process_time()
        for b in batches:
            for i, s in enumerate(b):
                check_sample(i, s)
            spans: dict[str, list[int]] = {}
            rows = []
            for s in b:
                rows.append((ids[(s.device_id, s.signal)], s.ts_ns, s.value, isinstance(s.value, bool),
                             int(s.quality)))
                span = spans.get(s.device_id)
                if span is None:
                    spans[s.device_id] = [s.ts_ns, s.ts_ns]
                else:
                    span[0] = min(span[0], s.ts_ns)
                    span[1] = max(span[1], s.ts_ns)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR REPLACE INTO samples (series_id, ts_ns, value, is_bool, quality) "
                             "VALUES (?, ?, ?, ?, ?)", rows)
            conn.executemany(_PROGRESS, [(d, lo, hi) for d, (lo, hi) in spans.items()])
            conn.execute("COMMIT")
            values += len(b)
        cpu += time.process_time() - t
    t = time.process_time()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return values, cpu + time.process_time() - t


# ---------------------------------------------------------------------- the floor
def run_raw(conn: sqlite3.Connection, ids: dict, stream: Stream, ticks: int) -> tuple[int, float]:
    cpu = 0.0
    values = 0
    for batches in stream.ticks(T0_NS, ticks):
        t = time.process_time()
        for b in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO raw (series_id, ts_ns, value, quality) VALUES (?, ?, ?, ?)",
                             [(ids[(s.device_id, s.signal)], s.ts_ns, s.value, int(s.quality))
                              for s in b])
            conn.execute("COMMIT")
            values += len(b)
        cpu += time.process_time() - t
    t = time.process_time()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return values, cpu + time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=80)
    ap.add_argument("--signals", type=int, default=100)
    ap.add_argument("--period-s", type=float, default=0.1)
    ap.add_argument("--seconds", type=float, default=60.0, help="stream time for the new layout")
    ap.add_argument("--baseline-seconds", type=float, default=3.0, help="stream time for clustered")
    ap.add_argument("--compact-every-s", type=float, default=30.0,
                    help="the gateway compacts at every roll-up (30 s by default)")
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--fill-step-s", type=int, default=300)
    ap.add_argument("--dir", default=None, help="where the stores go (a real disk, not tmpfs)")
    args = ap.parse_args()
    ticks = int(args.seconds / args.period_s)
    base_ticks = max(1, int(args.baseline_seconds / args.period_s))
    compact_every = max(1, int(args.compact_every_s / args.period_s))
    report: dict = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                    "series": args.devices * args.signals,
                    "values_per_s": round(args.devices * args.signals / args.period_s),
                    "prefill": {"days": args.days, "step_s": args.fill_step_s},
                    "targets": {"bytes_per_value": TARGET_BYTES_PER_VALUE,
                                "cpu_us_per_value": TARGET_CPU_US_PER_VALUE}}
    with tempfile.TemporaryDirectory(dir=args.dir or os.getcwd()) as tmp:
        d = Path(tmp)
        stream = Stream(args.devices, args.signals, args.period_s)

        db = d / "append.db"
        with Store.open(db) as store:
            report["prefill"]["values"] = fill_chunks(store, stream.keys, args.days, args.fill_step_s)
            r = measure(lambda: run_store(store, stream, ticks, compact_every), db)
            r["compact_every_s"] = args.compact_every_s
            r["auto_compact_after_values"] = store.compact_after
            r["reads_back"] = store.sample_count(since_ns=T0_NS) == r["values"]
            r["storage_info"] = store.storage_info()
            report["append_chunks"] = r

        db = d / "clustered.db"
        conn = connect(db)
        ids, _ = fill_clustered(conn, stream.keys, args.days, args.fill_step_s)
        report["clustered"] = measure(lambda: run_clustered(conn, ids, Stream(
            args.devices, args.signals, args.period_s), base_ticks), db)
        conn.close()

        db = d / "raw.db"
        conn = connect(db)
        conn.execute("CREATE TABLE raw (series_id INTEGER, ts_ns INTEGER, value, quality INTEGER)")
        report["raw_append"] = measure(lambda: run_raw(conn, ids, Stream(
            args.devices, args.signals, args.period_s), ticks), db)
        conn.close()
    new, old = report["append_chunks"], report["clustered"]
    report["improvement"] = {
        "bytes_per_value": round(old["bytes_per_value"] / max(new["bytes_per_value"], 1e-9), 1),
        "cpu_per_value": round(old["cpu_us_per_value"] / new["cpu_us_per_value"], 1)}
    report["meets_targets"] = (new["bytes_per_value"] <= TARGET_BYTES_PER_VALUE
                               and new["cpu_us_per_value"] <= TARGET_CPU_US_PER_VALUE)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
