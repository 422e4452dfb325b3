"""Benchmark: OPC UA data-change values per second from simulated servers into the store. Prints JSON.

    .venv/bin/python tests/bench/bench_opcua.py [--servers 4] [--variables 500] [--period-ms 100] [--seconds 15]

`--servers` asyncua servers, each in its own process, change every one of their `--variables`
Double variables every `--period-ms` (a new value and source timestamp each time); a real
Gateway (OPC UA sources subscribing at the same sampling and publishing interval, supervisors,
bounded pipeline, SQLite store) stores what they send. Once every device streams, values
stored over `--seconds` give the sustained rate; this process's CPU time over the same window
(the servers are other processes) gives CPU-seconds per 10k values. The baseline, in the same
run, writes as many samples straight into a store: the floor any gateway pays to persist.
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

NS_URI = "urn:shangyun:bench"


def serve(port: int, variables: int, period_s: float, ready: Any, stop: Any, written: Any, cpu: Any) -> None:
    """One server process: every variable changes every period. `written` counts the values
    written, `cpu` the process's CPU-seconds since it started serving (both shared)."""
    asyncio.run(_serve(port, variables, period_s, ready, stop, written, cpu))


async def _serve(port: int, variables: int, period_s: float, ready: Any, stop: Any, written: Any,
                 cpu: Any) -> None:
    import logging
    from datetime import datetime, timezone

    from asyncua import Server, ua

    logging.getLogger("asyncua").setLevel(logging.ERROR)

    class Written(ua.DataValue):
        """asyncua's server deep-copies every written value per monitored item (three quarters
        of a server's CPU here); these are made fresh for each write and never changed, so the
        copy can be the value itself: the load generator must not be what is measured."""

        def __deepcopy__(self, memo: Any) -> "Written":
            return self

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NS_URI)
    machine = await server.nodes.objects.add_object(ua.NodeId("m", idx), ua.QualifiedName("m", idx))
    nodes = [(await machine.add_variable(ua.NodeId(f"v{i}", idx), ua.QualifiedName(f"v{i}", idx), 0.0)).nodeid
             for i in range(variables)]
    await server.start()
    ready.set()
    loop = asyncio.get_running_loop()
    next_at, k, cpu_at = loop.time(), 0, time.process_time()
    try:
        while not stop.is_set():
            k += 1
            now = datetime.now(timezone.utc)
            for i, node in enumerate(nodes):
                dv = Written(ua.Variant(float(k * 1000 + i), ua.VariantType.Double),
                             SourceTimestamp=now, ServerTimestamp=now)
                await server.write_attribute_value(node, dv)
            with written.get_lock():
                written.value += len(nodes)
            now_cpu = time.process_time()
            with cpu.get_lock():
                cpu.value += now_cpu - cpu_at
            cpu_at = now_cpu
            next_at = max(next_at + period_s, loop.time())
            await asyncio.sleep(next_at - loop.time())
    finally:
        await server.stop()


def config_yaml(store: str, ports: list[int], variables: int, period_ms: float) -> str:
    lines = ["gateway:", f"  store: {{path: {store}}}", "  queue_size: 50000", "  batch_size: 2000",
             "  rollup_interval_s: 3600", "devices:"]
    for d, port in enumerate(ports):
        lines += [f"  - id: ua{d}", "    type: opcua",
                  f"    connection: {{endpoint: 'opc.tcp://127.0.0.1:{port}/bench', publishing_interval_ms: "
                  f"{period_ms}, sampling_interval_ms: {period_ms}, queue_size: 10, timeout_s: 10, watchdog_interval_s: 5}}",
                  "    signals:"]
        lines += [f"      - {{name: v{i}, address: 'nsu={NS_URI};s=v{i}'}}" for i in range(variables)]
    return "\n".join(lines) + "\n"


async def run_gateway(cfg_path: str, devices: int, seconds: float, written: Any, servers_cpu: Any) -> dict[str, Any]:
    from gateway.config import load_config
    from gateway.runner import Gateway

    gw = Gateway(load_config(cfg_path))
    await gw.start()
    try:
        deadline = time.monotonic() + 120
        ids = [f"ua{d}" for d in range(devices)]
        while not all(gw.store.sample_count(device_id=i) > 0 for i in ids):
            if time.monotonic() > deadline:
                raise SystemExit("OPC UA devices did not stream within 120 s")
            await asyncio.sleep(0.25)
        await asyncio.sleep(2.0)   # past the first notifications' burst: the steady state
        stored0, written0, scpu0 = await asyncio.to_thread(gw.store.sample_count), written.value, servers_cpu.value
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        stored1, written1, scpu1 = await asyncio.to_thread(gw.store.sample_count), written.value, servers_cpu.value
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        stats = gw.pipeline.stats()
    finally:
        await gw.stop()
    return {"elapsed_s": elapsed, "stored": stored1 - stored0, "written": written1 - written0, "cpu_s": cpu,
            "servers_cpu_s": scpu1 - scpu0,
            "pipeline": stats.to_dict() if hasattr(stats, "to_dict") else str(stats)}


def baseline(n: int) -> tuple[float, float]:
    """(samples/s, CPU-seconds) writing n samples straight into a fresh store, 2000 a batch."""
    from edge.model import Sample
    from edge.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(os.path.join(tmp, "base.db"))
        base = time.time_ns() - 3_600_000_000_000
        samples = [Sample(f"ua{i % 4}", f"v{i % 500}", base + i * 1_000_000, float(i)) for i in range(n)]
        t0, cpu0 = time.perf_counter(), time.process_time()
        for k in range(0, n, 2000):
            store.write_samples(samples[k:k + 2000])
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        store.close()
    return n / elapsed, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", type=int, default=4)
    ap.add_argument("--variables", type=int, default=500, help="variables per server, all changing")
    ap.add_argument("--period-ms", type=float, default=100.0, help="change, sampling and publishing interval")
    ap.add_argument("--seconds", type=float, default=15.0, help="measured window")
    args = ap.parse_args()
    from simulator.ports import free_port

    ctx = mp.get_context("spawn")
    stop, written, servers_cpu = ctx.Event(), ctx.Value("q", 0), ctx.Value("d", 0.0)
    ports = [free_port() for _ in range(args.servers)]
    procs, readies = [], []
    for port in ports:
        ready = ctx.Event()
        p = ctx.Process(target=serve, args=(port, args.variables, args.period_ms / 1000, ready, stop, written, servers_cpu),
                        daemon=True)
        p.start()
        procs.append(p)
        readies.append(ready)
    try:
        for r in readies:
            if not r.wait(120):
                raise SystemExit("a server did not start within 120 s")
        with tempfile.TemporaryDirectory() as tmp:
            cfg = os.path.join(tmp, "bench.yaml")
            with open(cfg, "w", encoding="utf-8") as f:
                f.write(config_yaml(os.path.join(tmp, "bench.db"), ports, args.variables, args.period_ms))
            result = asyncio.run(run_gateway(cfg, args.servers, args.seconds, written, servers_cpu))
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=15)
            if p.is_alive():
                p.terminate()
    base, base_cpu = baseline(max(result["stored"], 10_000))
    rate = result["stored"] / result["elapsed_s"]
    offered = args.servers * args.variables * 1000 / args.period_ms
    print(json.dumps({
        "benchmark": "gateway_opcua_end_to_end", "servers": args.servers, "variables_per_server": args.variables,
        "period_ms": args.period_ms, "offered_values_per_s": round(offered),
        "servers_wrote_values_per_s": round(result["written"] / result["elapsed_s"]),
        "window_s": round(result["elapsed_s"], 2), "values_stored": result["stored"],
        "end_to_end_values_per_s": round(rate),
        "gateway_cpu_s_per_10k_values": round(result["cpu_s"] / max(1, result["stored"]) * 1e4, 3),
        "gateway_cpu_share": round(result["cpu_s"] / result["elapsed_s"], 2),
        "servers_cpu_s_per_10k_values": round(result["servers_cpu_s"] / max(1, result["written"]) * 1e4, 3),
        "servers_cpu_share": round(result["servers_cpu_s"] / result["elapsed_s"], 2),
        # Cores gateway and servers together would need for the target at the measured costs.
        "cores_needed_at_target": round(20_000 * (result["cpu_s"] / max(1, result["stored"])
                                             + result["servers_cpu_s"] / max(1, result["written"])), 2),
        "baseline_store_values_per_s": round(base),
        "baseline_cpu_s_per_10k_values": round(base_cpu / max(result["stored"], 10_000) * 1e4, 3),
        "end_to_end_over_baseline": round(rate / base, 3),
        "target_values_per_s": 20_000, "meets_target": rate >= 20_000,
        "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
