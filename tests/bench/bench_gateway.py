"""Benchmark: how many samples per second the whole gateway sustains, end to end. Prints JSON.

    .venv/bin/python tests/bench/bench_gateway.py [--devices 50] [--messages 600]

Publishers in a separate process (one MQTT client per device) flood a private Mosquitto with
QoS 1 telemetry, as fast as the broker takes it, for `--devices` MQTT devices; a real Gateway
(MQTT sources acknowledging after commit, supervisors, bounded pipeline, SQLite store) stores
every sample while the broker queues what it cannot take yet. The baseline, measured in the
same run, is writing the same number of samples straight into a store: the floor any gateway
pays to persist. CPU-seconds per value (this process: the gateway; the broker and publishers
are other processes) survive a noisy machine better than rates do.
Every message must arrive exactly once: the run fails if one is missing.
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

SIGNALS = ("power_kw", "count_total", "energy_kwh")


def publish(host: str, port: int, devices: int, messages: int, start_ns: int) -> None:
    import paho.mqtt.client as mqtt

    clients = []
    for d in range(devices):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{d}")
        c.max_inflight_messages_set(1000)
        c.connect(host, port)
        c.loop_start()
        clients.append(c)
    infos = []
    for i in range(messages):
        ts_ms = start_ns // 1_000_000 + i * 10
        for d, c in enumerate(clients):
            payload = json.dumps({"ts": ts_ms, "power_kw": 10 + (i % 7), "count_total": i % 65536,
                                  "energy_kwh": i * 0.01})
            infos.append(c.publish(f"bench/{d}/telemetry", payload, qos=1))
    for info in infos:
        info.wait_for_publish(timeout=120)
    for c in clients:
        c.loop_stop()
        c.disconnect()


def config_yaml(store: str, host: str, port: int, devices: int) -> str:
    lines = ["gateway:", f"  store: {{path: {store}}}", "  queue_size: 20000", "devices:"]
    for d in range(devices):
        lines += [f"  - id: dev{d}", "    type: mqtt",
                  f"    connection: {{host: {host}, port: {port}, topic: bench/{d}/telemetry}}",
                  "    signals:"]
        lines += [f"      - {{name: {s}, address: {s}}}" for s in SIGNALS]
    return "\n".join(lines) + "\n"


async def run_gateway(cfg_path: str, expected: int, host: str, port: int, devices: int,
                      messages: int) -> dict:
    from gateway.config import load_config
    from gateway.runner import Gateway

    gw = Gateway(load_config(cfg_path))
    await gw.start()
    # Wait until every MQTT source is subscribed before publishing.
    deadline = time.monotonic() + 30
    while sum(1 for s in gw.supervisors.values() if str(getattr(s.state, "value", s.state))
              == "online") < devices:
        if time.monotonic() > deadline:
            raise SystemExit("MQTT sources did not come online")
        await asyncio.sleep(0.1)
    start_ns = time.time_ns() - 3_600_000_000_000  # an hour back: clear of the live minute
    pub = mp.get_context("spawn").Process(target=publish,
                                          args=(host, port, devices, messages, start_ns))
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    pub.start()
    stored = 0
    while stored < expected:
        await asyncio.sleep(0.25)
        stored = await asyncio.to_thread(gw.store.sample_count)
        if time.perf_counter() - t0 > 600:
            break
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    pub.join(timeout=60)
    stats = gw.pipeline.stats()
    await gw.stop()
    return {"elapsed_s": elapsed, "stored": stored, "cpu_s": cpu,
            "pipeline": stats.to_dict() if hasattr(stats, "to_dict") else str(stats)}


def baseline(n: int) -> tuple[float, float]:
    """(samples/s, CPU-seconds) writing n samples straight into a fresh store."""
    from edge.model import Sample
    from edge.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(os.path.join(tmp, "base.db"))
        base = time.time_ns() - 3_600_000_000_000
        samples = [Sample(f"dev{i % 10}", SIGNALS[i % 3], base + i * 1_000_000, float(i))
                   for i in range(n)]
        t0, cpu0 = time.perf_counter(), time.process_time()
        for k in range(0, n, 500):
            store.write_samples(samples[k:k + 500])
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        store.close()
    return n / elapsed, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--messages", type=int, default=600, help="messages per device")
    args = ap.parse_args()
    from simulator.broker import MosquittoBroker

    expected = args.devices * args.messages * len(SIGNALS)
    with tempfile.TemporaryDirectory() as tmp, MosquittoBroker() as broker:
        cfg = os.path.join(tmp, "bench.yaml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(config_yaml(os.path.join(tmp, "bench.db"), broker.host, broker.port,
                                args.devices))
        result = asyncio.run(run_gateway(cfg, expected, broker.host, broker.port,
                                         args.devices, args.messages))
    base, base_cpu = baseline(expected)
    e2e = result["stored"] / result["elapsed_s"]
    # The gateway's own stop samples (BAD, one per signal) are stored too.
    lost = max(0, expected - result["stored"])
    print(json.dumps({
        "benchmark": "gateway_mqtt_end_to_end", "devices": args.devices,
        "messages": args.devices * args.messages, "samples_expected": expected,
        "samples_stored": result["stored"], "lost": lost,
        "elapsed_s": round(result["elapsed_s"], 2),
        "end_to_end_messages_per_s": round(e2e / len(SIGNALS)),
        "end_to_end_samples_per_s": round(e2e),
        "gateway_cpu_us_per_value": round(result["cpu_s"] / max(1, result["stored"]) * 1e6, 2),
        "baseline_store_samples_per_s": round(base),
        "baseline_cpu_us_per_value": round(base_cpu / expected * 1e6, 2),
        "end_to_end_over_baseline": round(e2e / base, 3),
    }, indent=1))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
