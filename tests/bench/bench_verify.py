"""Benchmark: `verify` over devices × days of minute rollups. Prints JSON.

    .venv/bin/python tests/bench/bench_verify.py [--quick]

The baseline, measured in the same run, is the time to just produce the same cube chunks
(the synthetic reader's generation: a floor for any reader). Targets from issue #3:
200 devices × 90 days < 5 s and 1,000 × 90 < 30 s on the project's 2-core machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from typing import Iterator

import numpy as np

from edge.model import IdentityEvidence
from edge.rollup_layout import FIELDS, MINUTES_PER_DAY, F
from verifier.cube import DeviceInfo, RollupCube
from verifier.policy import Voucher
from verifier.reading import DEFAULT_CHUNK_DEVICES
from verifier.verify import DISTINCT_AVAILABLE, VerifyConfig, verify
from verifier.window import Window

START = dt.date(2024, 1, 1)


class SyntheticReader:
    """Honest-looking machines generated chunk by chunk (1,000 × 90 days would not fit in
    memory as one cube): each starts its day at its own minute, runs with noisy power and
    counts, stops for a fault now and then."""

    def __init__(self, n_devices: int, seed: int = 1):
        self._devices = [DeviceInfo(id=f"m{i:04d}", name=f"machine {i}", protocol="opcua",
                                    line=f"L{i % 10}", ideal_cycle_s=20.0,
                                    identity=IdentityEvidence("opcua", serial_number=f"SN{i}"))
                         for i in range(n_devices)]
        self._seed = seed

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def iter_cubes(self, window: Window,
                   chunk_devices: int = DEFAULT_CHUNK_DEVICES) -> Iterator[RollupCube]:
        for lo in range(0, len(self._devices), chunk_devices):
            devs = self._devices[lo:lo + chunk_devices]
            yield self._chunk(devs, window, lo)

    def _chunk(self, devs: list[DeviceInfo], window: Window, lo: int) -> RollupCube:
        rng = np.random.default_rng([self._seed, lo])
        n, k = len(devs), window.n_days
        data = np.zeros((n, k, len(FIELDS), MINUTES_PER_DAY), dtype=np.float32)
        minute = np.arange(MINUTES_PER_DAY)
        start = rng.integers(300, 540, (n, k, 1))
        stop = rng.integers(1200, 1380, (n, k, 1))
        running = (minute >= start) & (minute < stop)
        fault_at = rng.integers(600, 1100, (n, k, 1))
        fault = (minute >= fault_at) & (minute < fault_at + rng.integers(5, 40, (n, k, 1)))
        running &= ~fault
        idle = ~running & ~fault
        data[:, :, F["running_s"]] = running * 60
        data[:, :, F["fault_s"]] = fault * 60
        data[:, :, F["idle_s"]] = idle * 60
        counts = rng.integers(1, 4, (n, k, MINUTES_PER_DAY)).astype(np.float32) * running
        data[:, :, F["count_total"]] = counts
        data[:, :, F["count_good"]] = counts
        base = (3 + np.arange(n) % 7).astype(np.float32)[:, None, None]
        power = np.where(running, base, 0.4 * base / 3) \
            + rng.standard_normal((n, k, MINUTES_PER_DAY), dtype=np.float32) * 0.2
        data[:, :, F["power_mean_kw"]] = power
        data[:, :, F["power_max_kw"]] = power + 0.3
        data[:, :, F["energy_kwh"]] = np.maximum(power, 0) / 60
        data[:, :, F["samples"]] = 60
        return RollupCube(devs, window.days, data, np.ones((n, k), dtype=bool))

    def events(self, kind: str | None = None) -> list:
        return []

    def raw_timestamps(self, device_id: str, start_ns: int, end_ns: int,
                       limit: int = 10_000) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)


def measure(n_devices: int, n_days: int, chunk: int) -> dict:
    window = Window(START, START + dt.timedelta(days=n_days - 1))
    reader = SyntheticReader(n_devices)
    t0 = time.perf_counter()
    for _ in reader.iter_cubes(window, chunk):
        pass
    baseline = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = verify(reader, window=window, voucher=Voucher(item="设备物联", amount=100_000),
                    config=VerifyConfig(chunk_devices=chunk))
    total = time.perf_counter() - t0
    return {"devices": n_devices, "days": n_days, "chunk_devices": chunk,
            "baseline_read_s": round(baseline, 3), "verify_s": round(total, 3),
            "analysis_s": round(total - baseline, 3),
            "verify_over_baseline": round(total / baseline, 2) if baseline else None,
            "us_per_device_day": round(total / (n_devices * n_days) * 1e6, 1),
            "counted": report.verdict.counted_devices}


def build_store(path: str, n_devices: int, window: Window) -> float:
    """Write the synthetic factory's day records into a real store; returns seconds taken."""
    from edge.model import DeviceSpec
    from edge.store import Store

    reader = SyntheticReader(n_devices)
    t0 = time.perf_counter()
    store = Store.open(path)
    try:
        for info in reader.devices():
            store.upsert_device(DeviceSpec(id=info.id, name=info.name, protocol=info.protocol,
                                           connection={}, signals=(), line=info.line,
                                           ideal_cycle_s=info.ideal_cycle_s))
            store.set_identity(info.id, info.identity, 0)
        for cube in reader.iter_cubes(window):
            for d, info in enumerate(cube.devices):
                for k, day in enumerate(window.days.astype(dt.date)):
                    store.write_rollup_day(info.id, day, cube.data[d, k])
    finally:
        store.close()
    return time.perf_counter() - t0


def measure_store(n_devices: int, n_days: int, chunk: int) -> dict:
    """The same verify, reading real SQLite day records through StoreReader, as a reviewer
    does; the baseline is reading the cubes alone from the same store."""
    import tempfile

    from verifier.reading import StoreReader

    window = Window(START, START + dt.timedelta(days=n_days - 1))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.db")
        write_s = build_store(path, n_devices, window)
        size_mb = os.path.getsize(path) / 1e6
        with StoreReader([path]) as reader:
            t0 = time.perf_counter()
            for _ in reader.iter_cubes(window, chunk):
                pass
            baseline = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = verify(reader, window=window,
                            voucher=Voucher(item="设备物联", amount=100_000),
                            config=VerifyConfig(chunk_devices=chunk))
            total = time.perf_counter() - t0
    return {"devices": n_devices, "days": n_days, "reader": "store",
            "store_write_s": round(write_s, 2), "store_mb": round(size_mb, 1),
            "baseline_read_s": round(baseline, 3), "verify_s": round(total, 3),
            "analysis_s": round(total - baseline, 3),
            "us_per_device_day": round(total / (n_devices * n_days) * 1e6, 1),
            "counted": report.verdict.counted_devices}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes only (smoke run)")
    ap.add_argument("--chunk", type=int, default=DEFAULT_CHUNK_DEVICES)
    ap.add_argument("--store-devices", type=int, default=200,
                    help="devices in the store-backed run (90 days; 0 to skip)")
    args = ap.parse_args()
    if args.quick:
        grid, targets = [(20, 10), (40, 10)], []
    else:
        grid = [(d, k) for d in (50, 100, 200) for k in (30, 60, 90)]
        targets = [(200, 90, 5.0), (1000, 90, 30.0)]
    scaling = [measure(d, k, args.chunk) for d, k in grid]
    target_runs = []
    for d, k, limit in targets:
        m = measure(d, k, args.chunk)
        m["target_s"] = limit
        m["within_target"] = m["verify_s"] < limit
        target_runs.append(m)
    store_runs = []
    if args.store_devices and not args.quick:
        m = measure_store(args.store_devices, 90, args.chunk)
        m["target_s"] = 5.0 if args.store_devices <= 200 else 30.0
        m["within_target"] = m["verify_s"] < m["target_s"]
        store_runs.append(m)
    print(json.dumps({
        "benchmark": "verify", "python": platform.python_version(), "cpus": os.cpu_count(),
        "numpy": np.__version__, "distinct_checked": DISTINCT_AVAILABLE,
        "targets": target_runs, "store": store_runs, "scaling": scaling,
    }, indent=1))


if __name__ == "__main__":
    sys.exit(main())
