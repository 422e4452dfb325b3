"""The honest factory: 100 simulated machines over 30 days, rolled up by the edge — nothing flagged.
Plus the scale check: 1,000 synthetic machines × 90 days (timings printed, never asserted)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from verifier.cube import RollupCube
from verifier.distinct import DistinctConfig, concat_features, device_features, find_flags

from . import scenarios as sc


@pytest.fixture(scope="module")
def factory() -> RollupCube:
    t0 = time.perf_counter()
    cube = sc.simulated_factory(100, 30, seed=11)
    print(f"\nsimulated 100 machines × 30 days in {time.perf_counter() - t0:.1f} s")
    return cube


def test_honest_factory_flags_nothing(factory):
    t0 = time.perf_counter()
    block = concat_features([device_features(c) for c in sc.chunks(factory, 20)])
    t1 = time.perf_counter()
    flags = find_flags(block, factory.devices, DistinctConfig())
    t2 = time.perf_counter()
    print(f"100 × 30: features {t1 - t0:.2f} s, find_flags {t2 - t1:.2f} s")
    assert [f.to_dict() for f in flags] == []
    # The machines really are busy and comparable: otherwise "nothing flagged" proves nothing.
    assert block.day_informative.mean() > 0.8
    assert np.isfinite(block.series.astype(np.float32)).any(axis=2).all()


def test_one_clone_in_the_honest_factory_is_the_only_flag(factory):
    cube = sc.clone(factory, "m042", "m999", shift_min=133, scale=1.25, offset_kw=0.7, noise_kw=0.1)
    block = concat_features([device_features(c) for c in sc.chunks(cube, 20)])
    flags = find_flags(block, cube.devices, DistinctConfig())
    assert [(f.device_id, f.reason, f.other_device) for f in flags] == [("m999", "clone_of", "m042")]


def test_thousand_devices_ninety_days_timing():
    """Prints the distinct checks' cost at the issue's scale; the honest fleet must stay clean."""
    feature_s, gen_s, blocks, devices = 0.0, 0.0, [], []
    t = time.perf_counter()
    for chunk in sc.synthetic_chunks(1000, 90, chunk=25):
        t1 = time.perf_counter()
        gen_s += t1 - t
        blocks.append(device_features(chunk))
        devices += chunk.devices
        t = time.perf_counter()
        feature_s += t - t1
    t0 = time.perf_counter()
    block = concat_features(blocks)
    flags = find_flags(block, devices, DistinctConfig())
    flags_s = time.perf_counter() - t0
    mb = sum(a.nbytes for a in (block.series, block.day_stats, block.day_digest, block.day_informative)) / 1e6
    print(f"\n1000 × 90: generate {gen_s:.1f} s (not ours), device_features {feature_s:.2f} s, "
          f"find_flags {flags_s:.2f} s, features {mb:.0f} MB")
    assert flags == []
