"""Benchmark of store-and-forward: outbox overhead on ingest and backlog drain into VictoriaMetrics.
Prints JSON.

    python tests/bench/bench_outbox.py [--backlog 1000000] [--machines 100] [--batch 500]

Measured in the same run on the same machine:
  * ingest: samples/s written to a store without a sink (the baseline) and with one (every batch
    also queued in the outbox, same transaction), alternating rounds so both see the same load;
  * drain: a backlog of `--backlog` samples (an outage) forwarded to a local VictoriaMetrics
    through the InfluxDB sink, while live data of `--machines` machines keeps being written at a
    factory's rate (6 samples/s per machine, as the demo's machines send); the drain rate is
    compared with that live rate (target: >= 5x).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge import outbox  # noqa: E402
from edge.forwarder import Forwarder  # noqa: E402
from edge.model import Quality, Sample  # noqa: E402
from edge.sinks import make_sink  # noqa: E402
from edge.store import Store  # noqa: E402
from tests.sinks.servers import VictoriaMetrics  # noqa: E402

S_NS = 10**9
MS = 10**6
PER_MACHINE_HZ = 6.0
SIGNALS = ("power_kw", "count_total", "energy_kwh", "temperature_c", "state", "spindle_rpm")


def samples(t0_ns: int, machines: int, instants: int, step_ms: int = 1000) -> list[Sample]:
    out = []
    for k in range(instants):
        ts = t0_ns + k * step_ms * MS
        for m in range(machines):
            for j, sig in enumerate(SIGNALS):
                value = ("running", "idle")[k % 2] if sig == "state" else float(k + j)
                out.append(Sample(f"m{m:03d}", sig, ts + m, value, Quality.GOOD))
    return out


def write(store: Store, batch: list[Sample], size: int) -> float:
    t = time.perf_counter()
    for i in range(0, len(batch), size):
        store.write_samples(batch[i:i + size])
    return time.perf_counter() - t


def bench_ingest(tmp: Path, n: int, size: int, rounds: int = 3) -> dict:
    t0 = (time.time_ns() // S_NS - 86_400) * S_NS
    elapsed = {"without_sink": 0.0, "with_sink": 0.0}
    with Store.open(tmp / "plain.db") as plain, Store.open(tmp / "queued.db") as queued:
        outbox.register(queued, "influxdb")
        for r in range(rounds):
            batch = samples(t0 + r * 10_000 * S_NS, 50, n // (50 * len(SIGNALS) * rounds))
            elapsed["without_sink"] += write(plain, batch, size)
            elapsed["with_sink"] += write(queued, batch, size)
            count = len(batch) * (r + 1)
    rates = {k: count / v for k, v in elapsed.items()}
    return {"samples": count, "batch": size,
            "without_sink_samples_per_s": round(rates["without_sink"]),
            "with_sink_samples_per_s": round(rates["with_sink"]),
            "with_over_without": round(rates["with_sink"] / rates["without_sink"], 3)}


async def bench_drain(tmp: Path, backlog: int, machines: int, size: int) -> dict:
    vm = VictoriaMetrics(tmp / "vm")
    vm.start()
    try:
        t0 = (time.time_ns() // S_NS - 3 * 86_400) * S_NS
        store = Store.open(tmp / "drain.db")
        outbox.register(store, "influxdb")
        per_instant = 100 * len(SIGNALS)
        build_s = write(store, samples(t0, 100, backlog // per_instant), size)
        queued = outbox.stats(store)[0].backlog

        live_rate = machines * PER_MACHINE_HZ
        live_written = 0
        stop = asyncio.Event()

        async def live() -> None:
            # A factory's live data: one batch a second per machine set, newer than the backlog.
            nonlocal live_written
            k = 0
            start = time.time_ns()
            while not stop.is_set():
                batch = samples(start + k * S_NS, machines, 1)
                await asyncio.to_thread(store.write_samples, batch)
                live_written += len(batch)
                k += 1
                await asyncio.sleep(len(batch) / live_rate)

        sink = make_sink({"type": "influxdb", "url": vm.url, "org": "bench", "bucket": "bench",
                          "site": "bench", "max_batch": 5000})
        fwd = Forwarder(store, sink, retry_min_s=0.1, retry_max_s=1.0)
        started = time.perf_counter()
        live_task = asyncio.create_task(live())
        fwd_task = asyncio.create_task(fwd.run(stop))
        caught_up_s = None
        while time.perf_counter() - started < 120:
            st = outbox.stats(store)[0]
            if st.sent >= queued and caught_up_s is None:
                caught_up_s = time.perf_counter() - started
            # Caught up: what is left is live data of the last moments.
            if caught_up_s is not None and st.backlog <= 2 * machines * len(SIGNALS):
                break
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(live_task, fwd_task)
        await sink.close()
        st = outbox.stats(store)[0]
        store.close()
        drain_s = caught_up_s or (time.perf_counter() - started)
        drain_rate = queued / drain_s
        return {"backlog_samples": queued, "backlog_build_s": round(build_s, 1),
                "drain_s": round(drain_s, 1), "drain_samples_per_s": round(drain_rate),
                "live_machines": machines, "live_target_samples_per_s": live_rate,
                "live_written_during_drain": live_written,
                "live_achieved_samples_per_s": round(live_written / (time.perf_counter() - started)),
                "drain_over_live": round(drain_rate / live_rate, 1),
                "target_met": drain_rate >= 5 * live_rate,
                "sent": st.sent, "retried": st.retried, "rejected": st.rejected,
                "backlog_left": st.backlog}
    finally:
        vm.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backlog", type=int, default=1_000_000)
    ap.add_argument("--machines", type=int, default=100)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--ingest-samples", type=int, default=300_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="shangyun-bench-outbox-") as d:
        tmp = Path(d)
        result = {"python": platform.python_version(), "machine": platform.machine(),
                  "ingest": bench_ingest(tmp, args.ingest_samples, args.batch),
                  "drain": asyncio.run(bench_drain(tmp, args.backlog, args.machines, args.batch))}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
