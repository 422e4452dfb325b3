"""Of two near-copies the one that lags is the copy; identity evidence breaks ties; only then
first data and id. Both devices start with the window here, so first data cannot decide."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from verifier.cube import Flag, RollupCube
from verifier.distinct import DistinctConfig, concat_features, device_features, find_flags

from . import scenarios as sc


@functools.lru_cache(maxsize=1)
def base_cube() -> RollupCube:
    cube = sc.simulated_factory(5, 15, seed=5)
    devices = [dataclasses.replace(d, id="m000") if i == 0 else d
               for i, d in enumerate(cube.devices)]
    return RollupCube(devices, cube.days, cube.data, cube.present)


@pytest.fixture(scope="module")
def base() -> RollupCube:
    return base_cube()


def _without_first_day(cube: RollupCube) -> RollupCube:
    # The original ran before the window: both it and its copy have data from its first minute.
    return RollupCube(cube.devices, cube.days[1:], cube.data[:, 1:], cube.present[:, 1:])


def _flags(cube: RollupCube) -> list[Flag]:
    block = concat_features([device_features(c) for c in sc.chunks(cube, 4)])
    return find_flags(block, cube.devices, DistinctConfig())


@pytest.mark.parametrize("lag_min", [1, 2])
def test_the_lagging_copy_is_refused_even_when_its_id_sorts_first(base, lag_min):
    cube = _without_first_day(sc.clone(base, "m000", "c0", lag_min))
    first = {d.id: m for d, m in zip(cube.devices, device_features(cube).first_data_min)}
    assert first["c0"] == first["m000"]
    flags = _flags(cube)
    assert [(f.device_id, f.reason, f.other_device) for f in flags] == [("c0", "clone_of", "m000")]
    assert flags[0].evidence["follower"] == "c0"
    assert flags[0].evidence["follower_lag_min"] == lag_min
    assert flags[0].evidence["kept_device"] == "m000"


def test_identity_evidence_breaks_a_tie_in_time(base):
    cube = _without_first_day(sc.clone(base, "m000", "c0", 0))
    devices = [dataclasses.replace(d, identity=None) if d.id == "c0" else d for d in cube.devices]
    cube = RollupCube(devices, cube.days, cube.data, cube.present)
    flags = _flags(cube)
    assert {f.device_id for f in flags} == {"c0"}
    assert all(f.other_device == "m000" and f.evidence["kept_device"] == "m000" for f in flags)


def _raw(cube: RollupCube, delay_ms: float, jitter_ms: float) -> dict:
    start = cube.days[-1].astype("datetime64[ns]") + np.timedelta64(23, "h")
    original = sc.network_timestamps(start, 1 / 48)                        # 30 min at 1 s
    rng = np.random.default_rng(5)
    copy = original + ((delay_ms + rng.gamma(2.0, jitter_ms / 2, len(original))) * 1e6).astype(np.int64)
    return {"m000": original, "c0": copy}


def test_raw_timestamps_tell_who_follows_when_the_minutes_cannot():
    # An exact copy re-published 80 ms after each of the original's samples: the same minutes,
    # so no minute lag; c0 sorts first and both have identity evidence of their own.
    cube = _without_first_day(sc.clone(base_cube(), "m000", "c0", 0))
    block = concat_features([device_features(c) for c in sc.chunks(cube, 4)])
    flags = find_flags(block, cube.devices, DistinctConfig(), raw_timing=_raw(cube, 80, 4))
    assert {f.device_id for f in flags} == {"c0"}
    clone = next(f for f in flags if f.reason == "clone_of")
    assert clone.evidence["follower"] == "c0"
    assert 80 <= clone.evidence["follower_delay_ms"] <= 90


def test_raw_timestamps_in_another_phase_decide_nothing():
    cube = _without_first_day(sc.clone(base_cube(), "m000", "c0", 0))
    block = concat_features([device_features(c) for c in sc.chunks(cube, 4)])
    flags = find_flags(block, cube.devices, DistinctConfig(), raw_timing=_raw(cube, 500, 4))
    clone = next(f for f in flags if f.reason == "clone_of")
    assert "follower" not in clone.evidence
    assert {f.device_id for f in flags} == {"m000"}     # a tie: the id decides, as before
