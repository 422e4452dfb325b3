"""Hand-made rollup cubes for the verifier's tests: a few devices, a few days, every minute
set on purpose so expected figures can be computed by hand."""
from __future__ import annotations

import datetime as dt

import numpy as np

from edge.model import IdentityEvidence
from edge.rollup_layout import FIELDS, MINUTES_PER_DAY, F
from verifier.cube import DeviceInfo, RollupCube

START = dt.date(2024, 3, 1)


def device(i: int | str, **kw) -> DeviceInfo:
    did = i if isinstance(i, str) else f"m{i:03d}"
    kw.setdefault("name", f"machine {did}")
    kw.setdefault("identity", IdentityEvidence(protocol="opcua", serial_number=f"SN-{did}"))
    return DeviceInfo(id=did, **kw)


def empty_cube(n_dev: int, n_days: int, start: dt.date = START, devices=None) -> RollupCube:
    devs = list(devices) if devices is not None else [device(i) for i in range(n_dev)]
    days = np.arange(np.datetime64(start, "D"), np.datetime64(start, "D") + n_days)
    data = np.zeros((len(devs), n_days, len(FIELDS), MINUTES_PER_DAY), dtype=np.float32)
    present = np.zeros((len(devs), n_days), dtype=bool)
    return RollupCube(devs, days, data, present)


def set_state(cube: RollupCube, d: int, k: int, minutes: slice, state: str,
              seconds: float = 60.0, **fields: float) -> None:
    """Minutes of device d, day k spent in `state`, with sample count and other fields."""
    cube.present[d, k] = True
    cube.data[d, k, F[f"{state}_s"], minutes] = seconds
    cube.data[d, k, F["samples"], minutes] = fields.pop("samples", 60)
    for name, value in fields.items():
        cube.data[d, k, F[name], minutes] = value


def run_all_day(cube: RollupCube, d: int, k: int, *, count_per_min: float = 1.0,
                power_kw: float = 5.0) -> None:
    set_state(cube, d, k, slice(None), "running", count_total=count_per_min,
              count_good=count_per_min, power_mean_kw=power_kw, power_max_kw=power_kw,
              energy_kwh=power_kw / 60)


def minutes(h0: float, h1: float) -> slice:
    """UTC minutes of the day from hour h0 up to hour h1."""
    return slice(int(round(h0 * 60)), int(round(h1 * 60)))
