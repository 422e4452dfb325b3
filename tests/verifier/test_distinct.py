"""Unit tests of verifier.distinct's pieces: config, features, grouping, endpoints, timestamps."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import verifier.distinct as distinct
from edge.model import IdentityEvidence
from edge.rollup_layout import F
from verifier.distinct import AgainstSet, DistinctConfig, concat_features, device_features, find_flags
from verifier.distinct.identity import endpoint_key
from verifier.distinct.links import Link, flags_from_links
from verifier.distinct.timestamps import interval_regularity

from . import scenarios as sc


@pytest.fixture(scope="module")
def small():
    return sc.synthetic_factory(6, 21, seed=4)


def test_every_threshold_is_reported_and_documented():
    d = DistinctConfig().to_dict()
    assert d["clone_min_corr"] == DistinctConfig.clone_min_corr
    assert set(d) == {f.name for f in dataclasses.fields(DistinctConfig)}
    for code in distinct.REASONS:
        assert f"`{code}`" in distinct.__doc__
    # Every threshold carries its reason: the string right after the field in config.py.
    # (This used to accept a name merely appearing in config.py, which every field does.)
    assert set(_field_reasons()) == set(d)
    for name, reason in _field_reasons().items():
        assert reason is not None and len(reason.split()) >= 5, f"{name} has no reason"


def _field_reasons() -> dict[str, str | None]:
    tree = ast.parse(Path(distinct.config.__file__).read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DistinctConfig")
    out: dict[str, str | None] = {}
    for stmt, after in zip(cls.body, cls.body[1:] + [None]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            doc = after.value.value if isinstance(after, ast.Expr) and isinstance(
                after.value, ast.Constant) and isinstance(after.value.value, str) else None
            out[stmt.target.id] = doc
    return out


def test_features_stay_small_per_device(small):
    block = device_features(small)
    per_device = sum(a.nbytes for a in (block.series, block.day_stats, block.day_digest,
                                        block.day_informative)) / len(block)
    assert per_device < 25_000 * len(small.days) / 21  # ≈ 20 kB per device for 21 days
    assert block.series.dtype == np.float16


def test_concat_rejects_other_windows_and_settings(small):
    a = device_features(small)
    shifted = dataclasses.replace(small, days=small.days + 1)
    with pytest.raises(ValueError, match="different days"):
        concat_features([a, device_features(shifted)])
    with pytest.raises(ValueError, match="settings"):
        concat_features([a, device_features(small, DistinctConfig(series_bin_min=30))])
    with pytest.raises(ValueError):
        concat_features([])


def test_devices_must_match_the_block(small):
    block = device_features(small)
    with pytest.raises(ValueError, match="block's order"):
        find_flags(block, list(reversed(small.devices)))


def test_days_without_data_or_change_are_not_compared(small):
    data = small.data.copy()
    data[0, 3] = 0                                  # no data
    data[1, 3] = 0
    data[1, 3, F["planned_stop_s"]] = 60            # switched off all day: same on every machine
    data[1, 3, F["samples"]] = 7
    data[2, 3] = data[1, 3]
    cube = sc._cube(small.devices, small.days[0], len(small.days), data)
    block = device_features(cube)
    assert not block.day_informative[:3, 3].any()
    assert find_flags(block, cube.devices) == []


def test_clone_starting_first_is_kept_and_the_original_flagged(small):
    """With no lag to tell who copies whom (an exact copy) and identities alike, keeping is by
    earliest data: the reviewer sees both ids."""
    src = small.device_ids[2]
    late = sc.clone(small, src, "zz-late", shift_min=0)
    # Remove the first three days of the source: the clone (same data) now has earlier data.
    data = late.data.copy()
    data[2, :3] = 0
    cube = sc._cube(late.devices, late.days[0], len(late.days), data)
    flags = find_flags(device_features(cube), cube.devices)
    assert {f.device_id for f in flags} == {src}
    assert {f.other_device for f in flags} == {"zz-late"}


def test_a_group_keeps_exactly_one_device():
    ids = ["d", "c", "b", "a"]
    first = {"a": 5, "b": 1, "c": 3, "d": 2}
    links = [Link(0, 1, "clone_of", "{device}~{other}"), Link(1, 2, "shared_identity", "{device}~{other}"),
             Link(3, 0, "replay", "{device}~{other}")]
    flags = flags_from_links(links, ids, lambda i: (first[ids[i]], ids[i]))
    assert sorted({f.device_id for f in flags}) == ["a", "c", "d"]
    assert {f.evidence["kept_device"] for f in flags} == {"b"}
    assert all(f.message == f"{f.device_id}~{f.other_device}" for f in flags)


@pytest.mark.parametrize("a, b, same", [
    (IdentityEvidence("modbus", endpoint="tcp://10.0.0.5:502", details={"unit_id": "1"}),
     IdentityEvidence("modbus", endpoint="TCP://10.0.0.5:502/", details={"unit_id": "1"}), True),
    (IdentityEvidence("modbus", endpoint="tcp://10.0.0.5:502", details={"unit_id": "1"}),
     IdentityEvidence("modbus", endpoint="tcp://10.0.0.5:502", details={"unit_id": "2"}), False),
    (IdentityEvidence("mqtt", endpoint="mqtt://broker:1883", client_id="a"),
     IdentityEvidence("mqtt", endpoint="mqtt://broker:1883", client_id="b"), False),
    (IdentityEvidence("mqtt", endpoint="mqtt://broker:1883", client_id="a"),
     IdentityEvidence("mqtt", endpoint="mqtt://other:1883", client_id="a"), True),
    (IdentityEvidence("opcua"), IdentityEvidence("opcua"), False),
])
def test_endpoint_key(a, b, same):
    keys = DistinctConfig().endpoint_qualifier_keys
    ka, kb = endpoint_key(a, keys), endpoint_key(b, keys)
    assert (ka == kb and ka != "") is same


def test_devices_without_identity_are_not_grouped(small):
    devices = [dataclasses.replace(d, identity=None) for d in small.devices]
    assert find_flags(device_features(small), devices) == []


def test_interval_regularity_separates_a_grid_from_a_network():
    start = np.datetime64("2024-03-04", "D")
    grid = sc.regular_timestamps(start, 0.1)
    net = sc.network_timestamps(start, 0.1, jitter_ms=1.0)
    gappy = np.concatenate([grid[:2000], grid[4000:] + 7 * 10**9])   # gaps do not hide a grid
    assert interval_regularity(grid)[2] == 0.0
    assert interval_regularity(gappy)[2] < 1e-6
    assert interval_regularity(net)[2] > DistinctConfig().timestamp_cv_max
    assert interval_regularity(np.array([1, 2])) is None


def test_few_timestamps_are_not_judged(small):
    ts = sc.regular_timestamps(small.days[0], 0.001)         # 86 samples
    assert find_flags(device_features(small), small.devices, raw_timing={small.device_ids[0]: ts}) == []


def test_against_by_fingerprint_and_id_switch(small):
    dev = small.devices[1]
    by_fp = AgainstSet.from_lists(fingerprints=[dev.identity.fingerprint()])
    by_id = AgainstSet.from_lists(ids=[small.device_ids[3]])
    block = device_features(small)
    got = find_flags(block, small.devices, against=[by_fp, by_id])
    assert [(f.device_id, f.measure) for f in got] == [(dev.id, "identity_fingerprint"),
                                                       (small.device_ids[3], "device_id")]
    off = find_flags(block, small.devices, DistinctConfig(against_match_ids=False), against=[by_id])
    assert off == []


def test_flags_are_deterministic(small):
    cube = sc.clone(small, small.device_ids[0], "k-clone", 300, 1.4, 0.3)
    cube = sc.replay_days(cube, small.device_ids[4], small.device_ids[4], [(1, 9)])
    runs = [[f.to_dict() for f in find_flags(device_features(cube), cube.devices)] for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 2
