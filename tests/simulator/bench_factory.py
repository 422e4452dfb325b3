"""Benchmark (not a test): factory startup and steady CPU, history speed. Prints JSON.

    .venv/bin/python -m tests.simulator.bench_factory [--machines 30] [--seconds 20]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from simulator.broker import MosquittoBroker
from simulator.factory import Factory
from simulator.machine import Machine, make_specs


def _proc_cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def factory_numbers(n: int, seconds: float, broker: MosquittoBroker) -> dict:
    factory = Factory(make_specs(n), broker=(broker.host, broker.port), tick_s=1.0)
    wall, cpu = time.perf_counter(), time.process_time()
    await factory.start()
    startup = {"startup_wall_s": round(time.perf_counter() - wall, 2),
               "startup_cpu_s": round(time.process_time() - cpu, 2)}
    await asyncio.sleep(2)  # let connections settle before measuring the steady state
    wall, cpu = time.perf_counter(), time.process_time()
    broker_cpu = _proc_cpu_s(broker._proc.pid)  # noqa: SLF001 - bench only
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - wall
    steady = {
        "steady_cpu_percent_of_one_core": round(100 * (time.process_time() - cpu) / elapsed, 1),
        "mosquitto_cpu_percent": round(100 * (_proc_cpu_s(broker._proc.pid) - broker_cpu) / elapsed, 1),
        "measured_s": round(elapsed, 1),
    }
    await factory.stop()
    return {"machines": n, **startup, **steady}


def history_numbers(n: int, days: float) -> dict:
    specs = make_specs(n)
    start = time.time() - days * 86400
    wall = time.perf_counter()
    readings = 0
    for spec in specs:
        machine = Machine(spec, start)
        for _ in machine.history(start, start + days * 86400, 60):
            readings += 1
    elapsed = time.perf_counter() - wall
    return {"history_machines": n, "history_days": days, "history_readings": readings,
            "history_s": round(elapsed, 2), "machine_days_per_s": round(n * days / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    with MosquittoBroker() as broker:
        result = asyncio.run(factory_numbers(args.machines, args.seconds, broker))
    result.update(history_numbers(args.machines, 14))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
