"""Benchmark: the Modbus request side at plant scale. Prints JSON.

    .venv/bin/python tests/bench/bench_modbus.py [--devices 1000] [--duration 60]
        [--units-per-server 20] [--processes 10] [--registers 20] [--interval 1] [--in-flight 1]
        [--server pymodbus|modbus-serial] [--gc gateway,default]

Simulated devices: `--devices / --units-per-server` pymodbus TCP servers (endpoints), each
serving `--units-per-server` unit ids as a serial server does, spread over `--processes` child
processes so that the servers' CPU is not the gateway's. Every register holds a value derived
from (endpoint, unit, register), so an answer given to the wrong request is caught.

The gateway side, in this process, is what `shangyun run` builds for Modbus devices: one
ModbusSource and DeviceSupervisor per device, units of one endpoint sharing one connection
(connectors/modbus/bus.py); `emit` counts and checks the samples instead of storing them (the
store's share is its own benchmark, bench_store.py). Two plans in the same run:
- `coalesced`: the planner's, one read of `--registers` registers per device and poll;
- `per_signal`: one read per signal (max_registers_per_read 1), as a naive poller does.

Reported per plan, over the measured window after a warm-up: values/s sustained, gateway
CPU-seconds per 10k values and µs per value (this process is one event loop, so this is the
loop's cost), poll-cycle lateness p50/p99 (a poll joining its line's queue against its
schedule, and its first request going on the line, which includes the wait behind the other
units due at the same instant), skipped polls,
connections held, RSS. `check` says whether anything was lost: every poll of the window is
either made (with all its values, each the right one) or counted as skipped. `--gc default`
adds a run of each plan under CPython's default collector schedule, against the one `shangyun
run` sets (gateway/gc_policy.py), as `PLAN/default-gc`.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

if __package__ in (None, ""):   # run as a script: the repository root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from connectors import registry                      # noqa: E402
from connectors.modbus.bus import BUSES              # noqa: E402
from connectors.modbus.source import ModbusSource    # noqa: E402
from connectors.supervisor import DeviceSupervisor, stop_all   # noqa: E402
from gateway import gc_policy                        # noqa: E402
from edge.model import DeviceSpec, Quality, Sample, SignalSpec  # noqa: E402


def expected_value(endpoint: int, unit: int, register: int) -> int:
    return (endpoint * 1009 + unit * 31 + register) % 65536


def _serve(ports: list[int], units: int, registers: int, first_endpoint: int,
           ready: Any, stop: Any) -> None:
    """A child process: one pymodbus TCP server per port, each serving `units` unit ids."""
    import logging

    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def main() -> None:
        servers = []
        tasks = []
        for i, port in enumerate(ports):
            endpoint = first_endpoint + i
            devices = [SimDevice(id=u, simdata=[SimData(
                address=0, count=registers, datatype=DataType.REGISTERS,
                values=[expected_value(endpoint, u, r) for r in range(registers)])])
                for u in range(1, units + 1)]
            server = ModbusTcpServer(devices, address=("127.0.0.1", port))
            servers.append(server)
            tasks.append(asyncio.ensure_future(server.serve_forever()))
        for port, task in zip(ports, tasks):   # ready once every server accepts connections
            while True:
                if task.done():   # the port was taken meanwhile: the parent picks others
                    raise SystemExit(3)
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for server in servers:
            await server.shutdown()

    asyncio.run(main())


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class PortTaken(RuntimeError):
    """A port picked for a simulated endpoint was taken before its server bound it."""


class Servers:
    """The simulated plant: pymodbus endpoints spread over child processes. Each unit's
    registers start at `first_register(unit)`."""

    def __init__(self, endpoints: int, units: int, registers: int, processes: int):
        self.ports = _free_ports(endpoints)
        self.units, self.registers = units, registers
        self.kind = "pymodbus"
        ctx = mp.get_context("spawn")   # no copy of this process's loop or sockets
        self._stop = ctx.Event()
        self._procs: list[Any] = []
        self._ready: list[Any] = []
        per = -(-endpoints // max(1, processes))
        for first in range(0, endpoints, per):
            ready = ctx.Event()
            proc = ctx.Process(target=_serve, args=(self.ports[first:first + per], units, registers,
                                                    first, ready, self._stop), daemon=True)
            self._procs.append(proc)
            self._ready.append(ready)

    def __enter__(self) -> "Servers":
        for proc in self._procs:
            proc.start()
        for ready, proc in zip(self._ready, self._procs):
            deadline = time.monotonic() + 120
            while not ready.wait(0.2):
                if not proc.is_alive() or time.monotonic() > deadline:
                    self.__exit__()
                    raise PortTaken(f"simulator process {proc.pid} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


    def first_register(self, unit: int) -> int:
        return 0   # each unit id is its own simulated device


class PeerServers:
    """The simulated plant as modbus-serial ServerTCP endpoints (node, tests/peers/modbus-serial),
    one process each. pymodbus's server cannot take pipelined requests (it does not answer a
    second request arriving in the same segment); modbus-serial's answers them in order, so the
    pipelined link is measured against these. Its server answers every unit id from one image,
    so each unit reads its own block of it and an answer given to the wrong unit is still caught."""

    def __init__(self, endpoints: int, units: int, registers: int, processes: int = 0):
        from tests.connectors.modbus_rig import ModbusSerialPeer

        self.ports = _free_ports(endpoints)
        self.units, self.registers = units, registers
        self.kind = "modbus-serial"
        self._peers = [ModbusSerialPeer(port, {"holding": {
            self.first_register(u) + r: expected_value(e, u, r)
            for u in range(1, units + 1) for r in range(registers)}})
            for e, port in enumerate(self.ports)]

    def first_register(self, unit: int) -> int:
        return (unit - 1) * self.registers

    def __enter__(self) -> "PeerServers":
        try:
            for peer in self._peers:
                peer.start()
        except RuntimeError as err:
            self.__exit__()
            raise PortTaken(str(err)) from None
        return self

    def __exit__(self, *exc: object) -> None:
        for peer in self._peers:
            peer.stop()


def device_specs(servers: Servers | PeerServers, plan: str, interval_s: float, devices: int,
                 in_flight: int) -> list[DeviceSpec]:
    connector = registry.get("modbus")
    specs = []
    for d in range(devices):
        endpoint, unit = divmod(d, servers.units)
        conn = connector.connection_model.model_validate({
            "host": "127.0.0.1", "port": servers.ports[endpoint], "device_id": unit + 1,
            "poll_interval_s": interval_s, "timeout_s": 5.0, "device_identification": False,
            "max_in_flight": in_flight,
            **({"max_registers_per_read": 1} if plan == "per_signal" else {}),
        }).model_dump()
        signals = tuple(
            SignalSpec(f"r{r}", address=connector.address_model.model_validate(
                {"table": "holding", "offset": servers.first_register(unit + 1) + r}))
            for r in range(servers.registers))
        specs.append(DeviceSpec(id=f"e{endpoint}u{unit + 1}", name="", protocol="modbus",
                                connection=conn, signals=signals))
    return specs


@dataclass
class Tally:
    """What emit saw, per device, inside the measured window."""
    measuring: bool = False
    values: int = 0
    wrong: int = 0
    bad: int = 0
    polls: dict[str, int] = field(default_factory=dict)
    lateness_s: list[float] = field(default_factory=list)
    start_lateness_s: list[float] = field(default_factory=list)
    # per device, at its first and latest poll of the window: (due time, skipped so far, polls)
    first: dict[str, tuple[float, int, int]] = field(default_factory=dict)
    last: dict[str, tuple[float, int, int]] = field(default_factory=dict)


class NoObserver:
    def on_online(self, *args: Any) -> None: ...
    def on_offline(self, *args: Any) -> None: ...
    def on_event(self, *args: Any) -> None: ...


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(servers: Servers | PeerServers, plan: str, *, devices: int, interval_s: float,
                  warmup_s: float, duration_s: float, in_flight: int = 1,
                  gc_schedule: str = "gateway") -> dict[str, Any]:
    specs = device_specs(servers, plan, interval_s, devices, in_flight)
    expected = {}
    for i, spec in enumerate(specs):
        endpoint, unit = divmod(i, servers.units)
        expected[spec.id] = {f"r{r}": expected_value(endpoint, unit + 1, r) for r in range(servers.registers)}
    # the whole batch as the source builds it (signals in address order), for one comparison
    expected_batch = {d: ([f"r{r}" for r in range(servers.registers)], list(want.values()))
                      for d, want in expected.items()}
    tally = Tally()
    sources: dict[str, ModbusSource] = {}
    kept: list[list[Sample]] = []   # batches of the window, to time emit alone afterwards
    good = Quality.GOOD

    async def emit(batch: list[Sample]) -> None:
        if not tally.measuring or not batch:
            return
        device_id = batch[0].device_id
        source = sources[device_id]
        polls = tally.polls[device_id] = tally.polls.get(device_id, 0) + 1
        mark = (source.poll_due_s, source.skipped_polls, polls)
        tally.first.setdefault(device_id, mark)
        tally.last[device_id] = mark
        tally.lateness_s.append(source.last_lateness_s)
        tally.start_lateness_s.append(source.last_started_s - source.poll_due_s)
        if len(kept) < 500:
            kept.append(batch)
        names, values = expected_batch[device_id]
        if ([s.value for s in batch] == values and [s.signal for s in batch] == names
                and all(s.quality is good for s in batch)):
            tally.values += len(batch)
            return
        want = expected[device_id]
        for s in batch:
            if s.quality is not good:
                tally.bad += 1
            elif s.value != want[s.signal]:
                tally.wrong += 1
            else:
                tally.values += 1

    observer = NoObserver()
    # "gateway": the collector's schedule `shangyun run` sets (gateway/gc_policy.py);
    # "default": CPython's, for comparison in the same run
    gc_before = gc_policy.apply() if gc_schedule == "gateway" else gc.get_threshold()
    running: dict[DeviceSupervisor, asyncio.Task[None]] = {}
    for spec in specs:
        source = ModbusSource(spec)
        sources[spec.id] = source
        sup = DeviceSupervisor(source, emit, observer)
        running[sup] = asyncio.create_task(sup.run())
    try:
        await asyncio.sleep(warmup_s)
        online = sum(1 for sup in running if sup.state.value == "online")
        skipped_before = {d: s.skipped_polls for d, s in sources.items()}
        ru0, cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.monotonic()
        tally.measuring = True
        await asyncio.sleep(duration_s)
        tally.measuring = False
        cpu, elapsed = time.process_time() - cpu0, time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        user_s, sys_s = ru1.ru_utime - ru0.ru_utime, ru1.ru_stime - ru0.ru_stime
        rss, peak = _rss_mb()
        connections = len(BUSES)
        skipped = {d: s.skipped_polls - skipped_before[d] for d, s in sources.items()}
    finally:
        await stop_all(running)
        gc.set_threshold(*gc_before)
    emit_us = await _emit_cost(emit, tally, kept)
    # Nothing lost: between a device's first and latest poll of the window, every slot of its
    # schedule (due times on the grid) was polled, and seen here, or counted as skipped. The
    # skip counter at a poll covers the slots before that poll's due time.
    unaccounted = {}
    for d in sources:
        if d not in tally.first:
            unaccounted[d] = "no poll in the window"
            continue
        (due0, skipped0, polls0), (due1, skipped1, polls1) = tally.first[d], tally.last[d]
        slots = round((due1 - due0) / interval_s)
        accounted = (polls1 - polls0) + (skipped1 - skipped0)
        if slots != accounted:
            unaccounted[d] = f"{slots} slots, {accounted} polled or skipped"
    values = tally.values
    return {
        "plan": plan,
        "gc": gc_schedule,
        "gc_threshold": gc_policy.YOUNG_THRESHOLD if gc_schedule == "gateway" else gc_before[0],
        "devices": devices,
        "online_after_warmup": online,
        "reads_per_poll": len(next(iter(sources.values())).requests),
        "max_in_flight": in_flight,
        "connections": connections,
        "window_s": round(elapsed, 2),
        "values": values,
        "values_per_s": round(values / elapsed),
        "target_values_per_s": round(devices * servers.registers / interval_s),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_10k_values": round(cpu / values * 10_000, 4) if values else None,
        "us_per_value": round(cpu / values * 1e6, 2) if values else None,
        # user: Python (the loop, the source, emit); sys: the kernel (a send and a receive per
        # read at in-flight 1, epoll)
        "us_per_value_user": round(user_s / values * 1e6, 2) if values else None,
        "us_per_value_sys": round(sys_s / values * 1e6, 2) if values else None,
        # of us_per_value, the bench's own emit (it checks every value), timed on its own
        # afterwards over batches kept from the window
        "emit_us_per_value": emit_us,
        "lateness_p50_s": _round(_percentile(tally.lateness_s, 0.50)),
        "lateness_p99_s": _round(_percentile(tally.lateness_s, 0.99)),
        # when the poll's first request went on the line: also the wait behind the other units
        # of its line that are due at the same instant
        "start_lateness_p50_s": _round(_percentile(tally.start_lateness_s, 0.50)),
        "start_lateness_p99_s": _round(_percentile(tally.start_lateness_s, 0.99)),
        "polls": sum(tally.polls.values()),
        "skipped_polls": sum(skipped.values()),
        "rss_mb": round(rss, 1),
        "peak_rss_mb": round(peak, 1),
        "check": {"wrong_values": tally.wrong, "bad_values": tally.bad,
                  "devices_unaccounted": unaccounted,
                  "ok": tally.wrong == 0 and tally.bad == 0 and not unaccounted},
    }


async def _emit_cost(emit: Any, tally: Tally, batches: list[list[Sample]]) -> float | None:
    """CPU per value of `emit` alone, over `batches` (its tallies restored afterwards)."""
    n = sum(len(b) for b in batches)
    if not n:
        return None
    saved = (tally.values, tally.wrong, tally.bad, dict(tally.polls), len(tally.lateness_s),
             dict(tally.first), dict(tally.last), len(tally.start_lateness_s))
    tally.measuring = True
    rounds = max(1, 200_000 // n)
    cpu0 = time.process_time()
    for _ in range(rounds):
        for batch in batches:
            await emit(batch)
    cpu = time.process_time() - cpu0
    tally.measuring = False
    tally.values, tally.wrong, tally.bad, tally.polls = saved[:4]
    del tally.lateness_s[saved[4]:]
    del tally.start_lateness_s[saved[7]:]
    tally.first, tally.last = saved[5], saved[6]
    return round(cpu / (n * rounds) * 1e6, 3)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def run(*, devices: int = 1000, units_per_server: int = 20, registers: int = 20,
        processes: int = 10, interval_s: float = 1.0, warmup_s: float = 10.0,
        duration_s: float = 60.0, plans: tuple[str, ...] = ("coalesced", "per_signal"),
        in_flight: int = 1, server: str = "pymodbus",
        gc_schedules: tuple[str, ...] = ("gateway",)) -> dict[str, Any]:
    import logging
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    endpoints = -(-devices // units_per_server)
    for attempt in range(3):   # other processes on the machine may take a picked port
        try:
            plant = PeerServers if server == "modbus-serial" else Servers
            with plant(endpoints, units_per_server, registers, processes) as servers:
                results = [asyncio.run(measure(servers, plan, devices=devices, interval_s=interval_s,
                                               warmup_s=warmup_s, duration_s=duration_s,
                                               in_flight=in_flight, gc_schedule=schedule))
                           for plan in plans for schedule in gc_schedules]
            break
        except PortTaken:
            if attempt == 2:
                raise
    return {"bench": "modbus", "server": server, "devices": devices, "endpoints": endpoints,
            "units_per_endpoint": units_per_server, "registers_per_device": registers,
            "interval_s": interval_s, "cpus": os.cpu_count(),
            "max_rss_mb_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            # the simulated devices' CPU over the whole run (all plans), for scale
            "servers_cpu_s": round(sum(getattr(resource.getrusage(resource.RUSAGE_CHILDREN), f)
                                       for f in ("ru_utime", "ru_stime")), 1),
            # keyed by plan; a run under CPython's default collector schedule as "plan/default-gc"
            "results": {r["plan"] + ("" if r["gc"] == "gateway" else f"/{r['gc']}-gc"): r
                        for r in results}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--units-per-server", type=int, default=20)
    p.add_argument("--registers", type=int, default=20)
    p.add_argument("--processes", type=int, default=10)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--plans", default="coalesced,per_signal")
    p.add_argument("--server", choices=("pymodbus", "modbus-serial"), default="pymodbus",
                   help="simulated endpoints: pymodbus (in --processes) or modbus-serial (node, one each)")
    p.add_argument("--in-flight", type=int, default=1,
                   help="max_in_flight of every device: requests pipelined per endpoint")
    p.add_argument("--gc", default="gateway",
                   help="collector schedules to measure, comma-separated: gateway (what `shangyun "
                        "run` sets, gateway/gc_policy.py) and/or default (CPython's)")
    a = p.parse_args()
    unknown = set(a.gc.split(",")) - {"gateway", "default"}
    if unknown:
        p.error(f"--gc: unknown schedule(s) {', '.join(sorted(unknown))}; use gateway and/or default")
    out = run(devices=a.devices, units_per_server=a.units_per_server, registers=a.registers,
              processes=a.processes, interval_s=a.interval, warmup_s=a.warmup,
              duration_s=a.duration, plans=tuple(a.plans.split(",")), in_flight=a.in_flight, server=a.server,
              gc_schedules=tuple(a.gc.split(",")))
    print(json.dumps(out, indent=2))
    sys.exit(0 if all(r["check"]["ok"] for r in out["results"].values()) else 1)


if __name__ == "__main__":
    main()
