"""Benchmark: evidence bundles for devices × days of rollups. Prints JSON.

    .venv/bin/python tests/bench/bench_bundle.py [--devices 200] [--days 90] [--quick]

Builds a store the fast way (the synthetic factory of bench_verify written straight into
rollup_days in one transaction, every day marked rolled up, then one checkpoint that seals
them all), then measures in the same run: `verify` from the store (the baseline), `export`,
`bundle check`, and `verify bundle.zip` (its integrity check included, as the CLI runs it).
Target (issue 9): check and verify-from-bundle each within 2× of verifying the store; bundle
size per device-month reported.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time

from edge.bundle import check_path, export_bundle
from edge.evidence_key import EvidenceKey
from edge.rollup_codec import SUMMARY_COLUMNS, pack_day, summarize_day
from edge.store import Store
from tests.bench.bench_verify import START, SyntheticReader
from verifier.bundle_reader import BundleReader, with_integrity
from verifier.policy import Voucher
from verifier.reading import StoreReader
from verifier.verify import VerifyConfig, verify
from verifier.window import Window

NS_PER_DAY = 86_400 * 10**9


def build(path: str, n_devices: int, window: Window) -> dict[str, float]:
    from edge.model import DeviceSpec

    reader = SyntheticReader(n_devices)
    t0 = time.perf_counter()
    with Store.open(path) as store:
        for info in reader.devices():
            store.upsert_device(DeviceSpec(id=info.id, name=info.name, protocol=info.protocol,
                                           connection={}, signals=(), line=info.line,
                                           ideal_cycle_s=info.ideal_cycle_s))
            store.set_identity(info.id, info.identity, 0)
    end_ns = (window.end - dt.date(1970, 1, 1)).days * NS_PER_DAY + NS_PER_DAY
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    cols = ", ".join(SUMMARY_COLUMNS)
    for cube in reader.iter_cubes(window):
        rows = []
        for d, info in enumerate(cube.devices):
            for k, day in enumerate(window.days.astype(dt.date)):
                s = summarize_day(cube.data[d, k])
                rows.append((info.id, day.isoformat(), pack_day(cube.data[d, k]),
                             *(s[c] for c in SUMMARY_COLUMNS)))
        conn.executemany(
            f"INSERT INTO rollup_days (device_id, day, layout_version, data, {cols}, updated_ns) "
            f"VALUES (?, ?, 1, ?, {', '.join('?' * len(SUMMARY_COLUMNS))}, 0)", rows)
    # Rolled up through the window's end: the checkpoint seals every day.
    conn.executemany("INSERT OR REPLACE INTO rollup_progress (device_id, watermark_ns, max_ts_ns) "
                     "VALUES (?, ?, ?)", [(d.id, end_ns, end_ns) for d in reader.devices()])
    conn.execute("COMMIT")
    conn.close()
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    key = EvidenceKey.load_or_create(os.path.dirname(path))
    with Store.open(path) as store:
        cp = store.checkpoint(key, now_ns=end_ns + 3600 * 10**9)
    return {"store_write_s": round(write_s, 2), "seal_checkpoint_s":
            round(time.perf_counter() - t0, 2), "sealed_days": cp.body["counts"]["sealed_days"]}


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 3)


def measure(n_devices: int, n_days: int) -> dict:
    window = Window(START, START + dt.timedelta(days=n_days - 1))
    voucher = Voucher(item="设备物联", amount=100_000)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.db")
        built = build(path, n_devices, window)

        def from_store():
            with StoreReader([path]) as reader:
                return verify(reader, window=window, voucher=voucher, config=VerifyConfig())
        store_report, store_s = timed(from_store)
        bundle = os.path.join(tmp, "bench.zip")
        exported, export_s = timed(lambda: export_bundle(path, bundle, window.start, window.end))
        checked, check_s = timed(lambda: check_path(bundle))

        def from_bundle():
            with BundleReader(bundle) as reader:
                integrity = reader.integrity()
                return with_integrity(verify(reader, window=window, voucher=voucher,
                                             config=VerifyConfig()), integrity)
        bundle_report, bundle_s = timed(from_bundle)
    months = n_devices * n_days / 30.4375
    return {
        "devices": n_devices, "days": n_days, **built,
        "verify_store_s": store_s, "export_s": export_s,
        "bundle_check_s": check_s, "verify_bundle_s": bundle_s,
        "check_over_store": round(check_s / store_s, 2),
        "verify_bundle_over_store": round(bundle_s / store_s, 2),
        "within_2x": check_s <= 2 * store_s and bundle_s <= 2 * store_s,
        "bundle_mb": round(exported.size / 1e6, 1),
        "bundle_kb_per_device_month": round(exported.size / 1e3 / months, 1),
        "intact": checked.intact, "entries": checked.entries,
        "same_verdict": (store_report.verdict.verdict, store_report.verdict.counted_devices)
        == (bundle_report.verdict.verdict, bundle_report.verdict.counted_devices),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--quick", action="store_true", help="20 devices × 10 days (smoke run)")
    args = ap.parse_args()
    n, k = (20, 10) if args.quick else (args.devices, args.days)
    print(json.dumps({"benchmark": "bundle", "python": platform.python_version(),
                      "cpus": os.cpu_count(), "run": measure(n, k)}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
