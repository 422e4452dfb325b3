"""Benchmark: MQTT telemetry through the whole gateway on ONE shared connection. Prints JSON.

    .venv/bin/python tests/bench/bench_mqtt.py [--devices 50] [--messages 60000] [--rate 15000]
        [--gc gateway|default]

A real Gateway (one `mqtt_brokers` connection, one topic-template block for `--devices` machines,
10-field JSON, QoS 1 acknowledged after commit, bounded pipeline, SQLite store) and a private
Mosquitto; publishers run in other processes, QoS 1: the flood from `mosquitto_pub -l`, one per
device (`--flood-with paho` for Python publishers), the paced phase from `--publishers` processes
feeding `mosquitto_pub -l` at the rate (`--paced-with paho`: paho publishers), each payload's
timestamp set as it is handed to the publisher.

Two phases in one run:
- flood: `--messages` as fast as the publishers can send; messages/s from the first publish to
  the last commit, and the gateway process's CPU time per message (this process: broker and
  publishers are other processes, measured separately from /proc);
- paced: `--rate` messages/s (default half the target, 15,000) for `--paced-s` seconds; latency
  from the payload's timestamp (set at publish time) to the commit of its row, p50/p99.
The baseline, in the same run, writes the same samples straight into a store (Store.write_samples
in batches of 500): the floor any gateway pays to persist. Every message must be stored exactly
once: the run exits 1 if one is missing.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from typing import Any

FIELDS = ("state", "count_total", "count_good", "count_reject", "power_kw", "energy_kwh",
          "temp_c", "speed_rpm", "pressure_bar", "seq")
TEMPLATE = "bench/{line}/{device}/telemetry"


def payload(ts_us: int, i: int) -> bytes:
    return (b'{"ts":%d,"state":"running","count_total":%d,"count_good":%d,"count_reject":%d,'
            b'"power_kw":%.2f,"energy_kwh":%.3f,"temp_c":%.1f,"speed_rpm":%d,"pressure_bar":%.2f,"seq":%d}'
            % (ts_us, i, i, i // 50, 10 + i % 7, i * 0.01, 40 + i % 13, 1200 + i % 100, 5 + (i % 9) / 10, i))


def publisher(host: str, port: int, devices: list[int], messages: int, rate: float, seq0: int,
              done: Any) -> None:
    """Publish `messages` for `devices` round-robin, at `rate` msg/s (0: as fast as possible),
    the timestamp taken at publish time."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{devices[0]}")
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    topics = [f"bench/L{d % 4}/m{d:03d}/telemetry" for d in devices]
    t0 = time.perf_counter()
    info = None
    for i in range(messages):
        if rate and i % 50 == 0:
            ahead = t0 + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        info = client.publish(topics[i % len(topics)], payload(time.time_ns() // 1000, seq0 + i), qos=1)
    if info is not None:
        info.wait_for_publish(timeout=300)
    done.put(time.perf_counter() - t0)
    client.loop_stop()
    client.disconnect()


def mosquitto_pub_paced(host: str, port: int, devices: list[int], messages: int, rate: float, seq0: int,
                        done: Any) -> None:
    """`publisher`'s job done by Mosquitto's C client: one `mosquitto_pub -l` per device fed
    through its stdin at `rate` msg/s in 5 ms ticks, each line's timestamp taken as it is
    written. A paho publisher costs ~30 us of Python per message: two of them cannot send
    15,000 msg/s on two shared cores, and their own queueing would be counted as latency."""
    import subprocess

    procs = [subprocess.Popen(
        ["mosquitto_pub", "-h", host, "-p", str(port), "-q", "1", "-M", "1000", "-l",
         "-i", f"bench-paced-{d}", "-t", f"bench/L{d % 4}/m{d:03d}/telemetry"], stdin=subprocess.PIPE)
        for d in devices]
    pipes = [p.stdin for p in procs]
    t0 = time.perf_counter()
    i = 0
    while i < messages:
        due = min(messages, int((time.perf_counter() - t0) * rate) + 1)
        # One microsecond apart: a device's readings of one tick need timestamps of their own.
        now_us = time.time_ns() // 1000 - i
        touched = set()
        while i < due:
            k = i % len(pipes)
            pipes[k].write(payload(now_us + i, seq0 + i) + b"\n")   # type: ignore[union-attr]
            touched.add(k)
            i += 1
        for k in touched:
            pipes[k].flush()    # type: ignore[union-attr]
        time.sleep(0.005)
    for p in procs:
        p.stdin.close()     # type: ignore[union-attr]  # mosquitto_pub sends what it read, then exits
    for p in procs:
        p.wait(timeout=300)
    done.put(time.perf_counter() - t0)


def mosquitto_pub_flood(host: str, port: int, devices: int, messages: int, seq0: int, tmp: str) -> list[Any]:
    """The flood from Mosquitto's own C client (`mosquitto_pub -l`, one per device, a line per
    message): a Python publisher tops out near the gateway's own rate on two shared cores, so
    only a faster sender shows where the gateway's ceiling is. Timestamps are set when the lines
    are written (a flood measures throughput, not latency)."""
    import subprocess

    per = messages // devices
    procs = []
    now_us = time.time_ns() // 1000
    for d in range(devices):
        path = os.path.join(tmp, f"pub-{d}.txt")
        with open(path, "wb") as f:
            for i in range(per):
                f.write(payload(now_us + i, seq0 + d * per + i) + b"\n")
        with open(path, "rb") as stdin:
            procs.append(subprocess.Popen(
                ["mosquitto_pub", "-h", host, "-p", str(port), "-q", "1", "-M", "1000", "-l",
                 "-i", f"bench-pub-{d}", "-t", f"bench/L{d % 4}/m{d:03d}/telemetry"], stdin=stdin))
    return procs


def config_yaml(store: str, host: str, port: int, devices: int, protocol: str) -> str:
    signals = "\n".join(f"      - {{name: {f}, address: {f}}}" for f in FIELDS)
    return f"""gateway:
  store: {{path: {store}}}
  queue_size: 100000
  batch_size: 5000
  flush_interval_s: 0.05
mqtt_brokers:
  - {{name: bench, host: {host}, port: {port}, receive_maximum: 65535, timeout_s: 10, protocol: "{protocol}"}}
devices:
  - ids: "m{{000..{devices - 1:03d}}}"
    type: mqtt
    connection: {{broker: bench, topic: "{TEMPLATE}", stale_after_s: null}}
    signals:
{signals}
"""


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class Latency:
    """Payload timestamp -> commit of its row, for one signal per message (`seq`)."""

    def __init__(self) -> None:
        self.samples_us: list[int] = []
        self.recording = False

    def wrap(self, sink: Any) -> None:
        write = sink.write

        async def timed(batch: Any) -> None:
            await write(batch)
            if self.recording:
                now_us = time.time_ns() // 1000
                self.samples_us.extend(now_us - s.ts_ns // 1000 for s in batch if s.signal == "seq")
        sink.write = timed

    def summary(self) -> dict[str, float | None]:
        xs = sorted(self.samples_us)
        if not xs:
            return {"p50_ms": None, "p99_ms": None, "max_ms": None, "n": 0}
        pick = lambda q: round(xs[min(len(xs) - 1, int(q * len(xs)))] / 1000, 1)  # noqa: E731
        return {"p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(xs[-1] / 1000, 1), "n": len(xs)}


async def phase(gw: Any, host: str, port: int, devices: int, messages: int, rate: float, publishers: int,
                seq0: int, broker_pid: int, c_publishers: str = "", paced_with: str = "paho") -> dict[str, Any]:
    """`c_publishers`: a directory for mosquitto_pub's input files (flood only), or "" for the
    `publishers` processes, paho ones or (`paced_with="mosquitto_pub"`) feeding mosquitto_pub."""
    ctx = mp.get_context("spawn")
    done = ctx.Queue()
    groups = [list(range(devices))[k::publishers] for k in range(publishers)]
    per = messages // publishers
    before = await asyncio.to_thread(gw.store.sample_count)
    written0 = gw.pipeline.stats().written
    expected = written0 + per * publishers * len(FIELDS)
    c_procs: list[Any] = []
    target = mosquitto_pub_paced if paced_with == "mosquitto_pub" else publisher
    procs = [ctx.Process(target=target, args=(host, port, g, per, rate / publishers, seq0 + k * per, done))
             for k, g in enumerate(groups)] if not c_publishers else []
    broker0 = proc_cpu_s(broker_pid)
    cpu0, t0 = time.process_time(), time.perf_counter()
    if c_publishers:
        per = messages // devices
        expected = written0 + per * devices * len(FIELDS)
        c_procs = mosquitto_pub_flood(host, port, devices, messages, seq0, c_publishers)
    for p in procs:
        p.start()
    # The pipeline's count of committed samples: cheap to poll (a COUNT over the store is not,
    # and its CPU would be charged to the gateway); the store's own count is checked after.
    while gw.pipeline.stats().written < expected and time.perf_counter() - t0 < 900:
        await asyncio.sleep(0.05)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    broker_cpu = proc_cpu_s(broker_pid) - broker0
    stored = await asyncio.to_thread(gw.store.sample_count)
    pub_s = [done.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    for c in c_procs:
        c.wait(timeout=60)
    msgs = per * (devices if c_publishers else publishers)
    got = (stored - before) // len(FIELDS)
    return {"messages": msgs, "stored_messages": got, "lost": msgs - got, "elapsed_s": round(elapsed, 2),
            "messages_per_s": round(got / elapsed), "samples_per_s": round(got * len(FIELDS) / elapsed),
            "publish_s": round(max(pub_s), 2) if pub_s else None,
            "publishers": f"{len(c_procs)} mosquitto_pub" if c_procs else f"{len(procs)} {paced_with}",
            "gateway_cpu_us_per_message": round(cpu / max(1, got) * 1e6, 1),
            "broker_cpu_us_per_message": round(broker_cpu / max(1, got) * 1e6, 1)}


async def run(args: argparse.Namespace, cfg_path: str, host: str, port: int, broker_pid: int,
              tmp: str) -> dict[str, Any]:
    from gateway.config import load_config
    from gateway.runner import Gateway

    gw = Gateway(load_config(cfg_path))
    latency = Latency()
    latency.wrap(gw.pipeline.sinks[0])
    await gw.start()
    try:
        deadline = time.monotonic() + 30
        while not (gw.mqtt and all(c.up for c in gw.mqtt.connections)):
            if time.monotonic() > deadline:
                raise SystemExit("the shared connection did not come up")
            await asyncio.sleep(0.1)
        flood = await phase(gw, host, port, args.devices, args.messages, 0, args.publishers, 0, broker_pid,
                            tmp if args.flood_with == "mosquitto_pub" else "")
        latency.recording = True
        paced_n = int(args.rate * args.paced_s)
        paced = await phase(gw, host, port, args.devices, paced_n, args.rate, args.publishers,
                            args.messages + 1, broker_pid, paced_with=args.paced_with)
        latency.recording = False
        paced.update(latency.summary())
        paced["rate_asked"] = args.rate
        conn = gw.mqtt.connections[0].stats()
        return {"flood": flood, "paced": paced, "connection": {k: conn[k] for k in ("messages", "drains")}}
    finally:
        await gw.stop()


def baseline(n_messages: int) -> dict[str, float]:
    """Writing the same number of samples straight into a fresh store, 500 per call."""
    from edge.model import Sample
    from edge.store import Store

    n = n_messages * len(FIELDS)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(os.path.join(tmp, "base.db"))
        base = time.time_ns() - 600_000_000_000
        samples = [Sample(f"m{i % 50:03d}", FIELDS[i % len(FIELDS)], base + (i // len(FIELDS)) * 1000, float(i))
                   for i in range(n)]
        t0, cpu0 = time.perf_counter(), time.process_time()
        for k in range(0, n, 500):
            store.write_samples(samples[k:k + 500])
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        store.close()
    return {"messages_per_s": round(n_messages / elapsed), "samples_per_s": round(n / elapsed),
            "cpu_us_per_message": round(cpu / n_messages * 1e6, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--messages", type=int, default=60_000, help="flood phase: messages in all")
    ap.add_argument("--rate", type=float, default=15_000, help="paced phase: messages/s")
    ap.add_argument("--paced-s", type=float, default=10.0)
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--flood-with", choices=("paho", "mosquitto_pub"), default="mosquitto_pub",
                    help="flood publishers: mosquitto_pub (C, one per device) or paho processes")
    ap.add_argument("--paced-with", choices=("paho", "mosquitto_pub"), default="mosquitto_pub",
                    help="paced publishers: processes feeding mosquitto_pub at the rate, or paho publishers")
    ap.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="the gateway's MQTT version")
    ap.add_argument("--gc", choices=("gateway", "default"), default="gateway",
                    help="the collector's schedule: what `shangyun run` sets (gateway/gc_policy.py) or CPython's")
    args = ap.parse_args()
    if args.gc == "gateway":
        from gateway import gc_policy
        gc_policy.apply()
    from simulator.broker import MosquittoBroker

    with tempfile.TemporaryDirectory() as tmp, MosquittoBroker() as broker:
        cfg = os.path.join(tmp, "bench.yaml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(config_yaml(os.path.join(tmp, "bench.db"), broker.host, broker.port, args.devices, args.protocol))
        result = asyncio.run(run(args, cfg, broker.host, broker.port, broker._proc.pid, tmp))
    base = baseline(args.messages)
    flood = result["flood"]
    out = {"benchmark": "mqtt_shared_connection_end_to_end", "devices": args.devices,
           "fields_per_message": len(FIELDS), "publishers": args.publishers, "protocol": args.protocol, "gc": args.gc, "cores": os.cpu_count(),
           "loadavg_1m": os.getloadavg()[0], **result, "baseline_store": base,
           "flood_over_baseline": round(flood["messages_per_s"] / base["messages_per_s"], 3)}
    print(json.dumps(out, indent=1))
    return 1 if flood["lost"] or result["paced"]["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
