"""Of two near-copies the one that lags is the copy; identity evidence breaks ties; only then
first data and id. Both devices start with the window here, so first data cannot decide."""
from __future__ import annotations

import dataclasses

import pytest

from verifier.cube import Flag, RollupCube
from verifier.distinct import DistinctConfig, concat_features, device_features, find_flags

from . import scenarios as sc


@pytest.fixture(scope="module")
def base() -> RollupCube:
    cube = sc.simulated_factory(5, 15, seed=5)
    devices = [dataclasses.replace(d, id="m000") if i == 0 else d
               for i, d in enumerate(cube.devices)]
    return RollupCube(devices, cube.days, cube.data, cube.present)


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
