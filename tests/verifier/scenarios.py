"""Honest factories and fraud scenarios as RollupCubes, for the verifier's tests and benchmarks.

Two ways to build an honest factory:
* `simulated_factory` runs the virtual factory's machine model (simulator.machine) and turns each
  machine's readings into minute rollups with the edge's own rollup function, so the verifier is
  tested on what the pipeline would store. About 0.2 s per machine-month.
* `synthetic_factory` is a small numpy generator (shared two-shift calendar with breaks, machine's
  own faults, idle gaps and changeovers) fast enough for 1,000 machines × 90 days.

Fraud transforms take a cube and return a new one with devices added or altered; each documents
the trick it plays. Identity tricks work on DeviceInfo lists.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np

from edge.model import NS_PER_S, IdentityEvidence
from edge.rollup import SignalColumns, rollup_columns
from edge.rollup_layout import FIELDS, MINUTES_PER_DAY, F
from verifier.cube import DeviceInfo, RollupCube

DAY_S = 86_400
DEFAULT_START = np.datetime64("2024-03-04", "D")  # a Monday
_SIGNALS = ("count_total", "count_good", "count_reject", "power_kw", "energy_kwh")


# --- honest factories -----------------------------------------------------------------------

def simulated_factory(n: int, days: int, seed: int = 1, start: np.datetime64 = DEFAULT_START) -> RollupCube:
    """n machines from simulator.make_specs over `days` UTC days, rolled up by edge.rollup."""
    from simulator.machine import Machine, make_specs

    specs = make_specs(n, seed=seed)
    start_s = int(start.astype("datetime64[s]").astype(np.int64))
    n_min = days * MINUTES_PER_DAY
    data = np.empty((n, days, len(FIELDS), MINUTES_PER_DAY), dtype=np.float32)
    for d, spec in enumerate(specs):
        machine = Machine(spec, start_s - 3600)
        rows = list(machine.history(start_s - 600, start_s + days * DAY_S, report_interval_s=60))
        rolled = rollup_columns(_columns(rows), start_s * NS_PER_S, n_min)
        data[d] = rolled.reshape(len(FIELDS), days, MINUTES_PER_DAY).transpose(1, 0, 2)
    devices = [
        DeviceInfo(id=s.id, name=s.name, protocol=s.protocol, profile=s.profile, line=s.line,
                   identity=sim_identity(s.protocol, s.serial, port=40000 + i), source="sim")
        for i, s in enumerate(specs)
    ]
    return _cube(devices, start, days, data)


def _columns(rows: list[tuple[float, dict]]) -> dict[str, SignalColumns]:
    ts = np.array([int(round(t * NS_PER_S)) for t, _ in rows], dtype=np.int64)
    good = np.zeros(len(rows), dtype=np.int8)
    cols = {"state": SignalColumns(ts, np.array([v["state"] for _, v in rows], dtype=object), good)}
    for name in _SIGNALS:
        cols[name] = SignalColumns(ts, np.array([float(v[name]) for _, v in rows]), good)
    return cols


def sim_identity(protocol: str, serial: str, port: int) -> IdentityEvidence:
    """Identity evidence as the connectors capture it from a simulated machine (ADDRESSES.md)."""
    if protocol == "opcua":
        return IdentityEvidence(protocol, endpoint=f"opc.tcp://127.0.0.1:{port}/shangyun/{serial}",
                                application_uri=f"urn:shangyun:sim:{serial}", serial_number=serial)
    if protocol == "modbus":
        return IdentityEvidence(protocol, endpoint=f"tcp://127.0.0.1:{port}", serial_number=serial,
                                details={"unit_id": "1"})
    return IdentityEvidence(protocol, endpoint="mqtt://127.0.0.1:1883", serial_number=serial,
                            client_id=f"sim-{serial}")


def synthetic_factory(n: int, days: int, seed: int = 1, start: np.datetime64 = DEFAULT_START,
                      first: int = 0) -> RollupCube:
    """n honest machines (ids s0000...) on one two-shift calendar with shared breaks."""
    rng = np.random.default_rng([seed, first])
    data = np.stack([_synthetic_machine(rng, days, start) for _ in range(n)])
    devices = [DeviceInfo(id=f"s{first + i:04d}", name=f"synthetic {first + i}", protocol="modbus",
                          identity=IdentityEvidence("modbus", endpoint=f"tcp://10.0.{(first + i) // 250}."
                                                    f"{(first + i) % 250}:502", serial_number=f"SYN{first + i:06d}"),
                          source="synthetic")
               for i in range(n)]
    return _cube(devices, start, days, data)


def synthetic_chunks(n: int, days: int, chunk: int = 25, seed: int = 1) -> Iterator[RollupCube]:
    """The synthetic factory in chunks of devices, as the verifier reads big reviews."""
    for lo in range(0, n, chunk):
        yield synthetic_factory(min(chunk, n - lo), days, seed=seed, first=lo)


def _synthetic_machine(rng: np.random.Generator, days: int, start: np.datetime64) -> np.ndarray:
    t = days * MINUTES_PER_DAY
    minute = np.arange(t) % MINUTES_PER_DAY
    weekday = ((start.astype(np.int64) + 3 + np.arange(t) // MINUTES_PER_DAY) % 7)
    # Shared calendar: shifts 06:00-22:00 Monday to Saturday, breaks at 10:00, 12:00 and 18:00.
    shift_start = 360 + rng.integers(-8, 9, size=days).repeat(MINUTES_PER_DAY)
    on_shift = (minute >= shift_start) & (minute < 1320) & (weekday != 6)
    for b in (600, 720, 1080):
        on_shift &= ~((minute >= b) & (minute < b + 30))
    # The machine's own stops: (mean running minutes between, median duration).
    down = np.zeros(t + 1, dtype=np.int32)
    for every, median in ((240.0, 25.0), (90.0, 6.0), (600.0, 40.0)):
        k = rng.poisson(t / every)
        starts = rng.integers(0, t, size=k)
        ends = np.minimum(starts + np.ceil(rng.lognormal(np.log(median), 0.6, size=k)).astype(int), t)
        np.add.at(down, starts, 1)
        np.add.at(down, ends, -1)
    stopped = np.cumsum(down[:-1]) > 0
    running = on_shift & ~stopped
    idle = on_shift & stopped
    rated = rng.uniform(5.0, 40.0)
    load = 0.8 + 0.05 * np.convolve(rng.standard_normal(t + 9), np.ones(10) / 10 ** 0.5, "valid")
    power = np.where(running, rated * load, np.where(idle, 0.25 * rated, 0.02 * rated))
    cycle_s = rng.uniform(8.0, 40.0)
    counts = np.where(running, rng.poisson(60.0 / cycle_s, size=t), 0)
    out = np.zeros((days, len(FIELDS), MINUTES_PER_DAY), dtype=np.float32)
    rows = {
        "running_s": running * 60.0,
        "idle_s": idle * 60.0,
        "planned_stop_s": ~on_shift * 60.0,
        "count_total": counts,
        "count_good": counts,
        "power_mean_kw": power,
        "power_max_kw": power * 1.05,
        "energy_kwh": power / 60.0,
        "samples": 7 + rng.integers(0, 2, size=t),
    }
    for name, values in rows.items():
        out[:, F[name], :] = np.asarray(values, dtype=np.float32).reshape(days, MINUTES_PER_DAY)
    return out


def _cube(devices: list[DeviceInfo], start: np.datetime64, days: int, data: np.ndarray) -> RollupCube:
    present = (data[:, :, F["samples"], :] > 0).any(axis=2)
    return RollupCube(devices=devices, days=start + np.arange(days), data=data, present=present)


# --- cube helpers -----------------------------------------------------------------------------

def chunks(cube: RollupCube, size: int) -> Iterator[RollupCube]:
    """The cube split into chunks of devices (how the verifier reads large reviews)."""
    for lo in range(0, len(cube.devices), size):
        yield RollupCube(cube.devices[lo:lo + size], cube.days, cube.data[lo:lo + size],
                         cube.present[lo:lo + size])


def with_devices(cube: RollupCube, devices: Sequence[DeviceInfo], data: np.ndarray) -> RollupCube:
    """The cube with devices (and their (n, days, fields, minutes) data) appended."""
    return _cube(list(cube.devices) + list(devices), cube.days[0], len(cube.days),
                 np.concatenate([cube.data, data.astype(np.float32)], axis=0))


def index_of(cube: RollupCube, device_id: str) -> int:
    return cube.device_ids.index(device_id)


def fake_device(device_id: str, protocol: str = "modbus", **identity: str) -> DeviceInfo:
    """A device with its own identity (fresh serial and endpoint unless given)."""
    ident = {"serial_number": f"FAKE-{device_id}", "endpoint": f"tcp://fake-{device_id}:502"} | identity
    return DeviceInfo(id=device_id, name=f"fake {device_id}", protocol=protocol,
                      identity=IdentityEvidence(protocol, **ident), source="fraud")


# --- fraud transforms -------------------------------------------------------------------------

def clone(cube: RollupCube, source_id: str, new_id: str, shift_min: int, scale: float = 1.0,
          offset_kw: float = 0.0, noise_kw: float = 0.0, seed: int = 7) -> RollupCube:
    """A new device replaying `source_id` shifted `shift_min` minutes later, its power ×scale
    +offset (energy to match), its counts ×scale, optionally with noise on power."""
    src = cube.data[index_of(cube, source_id)]
    n_days = len(cube.days)
    flat = src.transpose(1, 0, 2).reshape(len(FIELDS), -1)
    moved = np.zeros_like(flat)
    moved[:, shift_min:] = flat[:, :flat.shape[1] - shift_min]
    has = moved[F["samples"]] > 0
    rng = np.random.default_rng(seed)
    for name in ("power_mean_kw", "power_max_kw"):
        noisy = moved[F[name]] * scale + offset_kw
        noisy += noise_kw * rng.standard_normal(noisy.shape)
        moved[F[name]] = np.where(has, np.maximum(noisy, 0), 0)
    moved[F["energy_kwh"]] = moved[F["power_mean_kw"]] / 60.0
    for name in ("count_total", "count_good", "count_reject"):
        moved[F[name]] = np.round(moved[F[name]] * scale)
    data = moved.reshape(len(FIELDS), n_days, MINUTES_PER_DAY).transpose(1, 0, 2)[None]
    return with_devices(cube, [fake_device(new_id)], data)


def replay_days(cube: RollupCube, target_id: str, source_id: str,
                pairs: Sequence[tuple[int, int]]) -> RollupCube:
    """`target_id` shows, on day index `dst`, exactly what `source_id` showed on day `src`
    (source == target: a device replaying its own earlier days)."""
    data = cube.data.copy()
    t, s = index_of(cube, target_id), index_of(cube, source_id)
    for src_day, dst_day in pairs:
        data[t, dst_day] = cube.data[s, src_day]
    return _cube(list(cube.devices), cube.days[0], len(cube.days), data)


def _altered(cube: RollupCube, device_id: str) -> tuple[np.ndarray, np.ndarray]:
    data = cube.data.copy()
    return data, data[index_of(cube, device_id)]


def flatten_power(cube: RollupCube, device_id: str) -> RollupCube:
    """`device_id` draws exactly its mean running power whenever running (a faked power signal)."""
    all_data, data = _altered(cube, device_id)
    running = data[:, F["running_s"], :] >= 55
    level = float(data[:, F["power_mean_kw"], :][running].mean())
    for name in ("power_mean_kw", "power_max_kw"):
        data[:, F[name], :] = np.where(running, level, data[:, F[name], :])
    return _cube(list(cube.devices), cube.days[0], len(cube.days), all_data)


def regular_counts(cube: RollupCube, device_id: str, per_minute: int = 4) -> RollupCube:
    """`device_id`'s counter adds exactly `per_minute` parts every running minute."""
    all_data, data = _altered(cube, device_id)
    running = data[:, F["running_s"], :] >= 55
    part = np.where(running, float(per_minute), np.minimum(data[:, F["count_total"], :], per_minute))
    data[:, F["count_total"], :] = part
    data[:, F["count_good"], :] = part
    data[:, F["count_reject"], :] = 0
    return _cube(list(cube.devices), cube.days[0], len(cube.days), all_data)


def same_identity(devices: Sequence[DeviceInfo], copy_from: str, onto: str,
                  keep_endpoint: bool = True) -> list[DeviceInfo]:
    """`onto` presents `copy_from`'s identity evidence: one machine registered under two ids,
    reached through its own address (a second port forward) unless `keep_endpoint` is False."""
    ident = next(d.identity for d in devices if d.id == copy_from)
    out = []
    for d in devices:
        if d.id == onto:
            endpoint = d.identity.endpoint if keep_endpoint and d.identity else ident.endpoint
            d = dataclasses.replace(d, identity=dataclasses.replace(ident, endpoint=endpoint))
        out.append(d)
    return out


def same_endpoint(devices: Sequence[DeviceInfo], copy_from: str, onto: Sequence[str]) -> list[DeviceInfo]:
    """Devices `onto` are read from `copy_from`'s endpoint (and unit), with serials of their own
    (a register map can claim any serial; the wire connection cannot be faked)."""
    src = next(d.identity for d in devices if d.id == copy_from)
    return [
        dataclasses.replace(d, identity=dataclasses.replace(
            src, serial_number=f"POSE-{d.id}", application_uri="", certificate_sha256=""))
        if d.id in onto else d
        for d in devices
    ]


def regular_timestamps(start: np.datetime64, days: float, interval_s: float = 1.0) -> np.ndarray:
    """Sample times on an exact grid, as a program generating data makes them."""
    t0 = int(start.astype("datetime64[ns]").astype(np.int64))
    return t0 + np.arange(int(days * DAY_S / interval_s), dtype=np.int64) * int(interval_s * NS_PER_S)


def network_timestamps(start: np.datetime64, days: float, interval_s: float = 1.0,
                       jitter_ms: float = 3.0, seed: int = 3) -> np.ndarray:
    """Sample times of a polled device over a real network: a grid plus scheduling and network jitter."""
    grid = regular_timestamps(start, days, interval_s)
    rng = np.random.default_rng(seed)
    return grid + (rng.gamma(2.0, jitter_ms / 2.0, size=len(grid)) * 1e6).astype(np.int64)


# --- honest plants that look alike ------------------------------------------------------------

def reliable_shared_calendar(cube: RollupCube, late_start_max_min: int = 60,
                             seed: int = 11) -> RollupCube:
    """Honest machines that hardly stop on their own (idle minutes become running) on one
    calendar whose shift starts late by the same 0..`late_start_max_min` minutes on a given day
    for the whole plant: what is left after each machine's typical day is mostly the plant's."""
    data = cube.data.copy()
    idle = data[:, :, F["idle_s"]] > 0
    data[:, :, F["running_s"]] = np.where(idle, 60.0, data[:, :, F["running_s"]])
    data[:, :, F["idle_s"]] = 0
    data[:, :, F["power_mean_kw"]] = np.where(idle, data[:, :, F["power_mean_kw"]] * 3.2,
                                              data[:, :, F["power_mean_kw"]])
    rng = np.random.default_rng(seed)
    for k in range(len(cube.days)):
        late = slice(360, 360 + int(rng.integers(0, late_start_max_min + 1)))
        data[:, k, F["running_s"], late] = 0
        data[:, k, F["planned_stop_s"], late] = 60
        data[:, k, F["power_mean_kw"], late] *= 0.05
        for name in ("count_total", "count_good"):
            data[:, k, F[name], late] = 0
    data[:, :, F["energy_kwh"]] = data[:, :, F["power_mean_kw"]] / 60
    return _cube(list(cube.devices), cube.days[0], len(cube.days), data)
