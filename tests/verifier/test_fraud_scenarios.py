"""Fraud scenarios built with the simulator: each caught with the right reason and evidence."""
from __future__ import annotations

import pytest

from verifier.cube import Flag, RollupCube
from verifier.distinct import AgainstSet, DistinctConfig, concat_features, device_features, find_flags

from . import scenarios as sc

DAYS = 28


@pytest.fixture(scope="module")
def base() -> RollupCube:
    return sc.simulated_factory(12, DAYS, seed=5)


def run(cube: RollupCube, devices=None, **kwargs) -> list[Flag]:
    block = concat_features([device_features(c) for c in sc.chunks(cube, 5)])
    return find_flags(block, devices or cube.devices, DistinctConfig(), **kwargs)


def only(flags: list[Flag], reason: str) -> list[Flag]:
    return [f for f in flags if f.reason == reason]


def test_the_base_factory_is_clean(base):
    assert run(base) == []


@pytest.mark.parametrize("shift_min, scale, offset_kw, noise_kw", [
    (37, 1.3, 2.0, 0.0),       # half a bin off the 15-min grid
    (5 * 60, 0.6, -0.5, 0.2),  # hours later, scaled down, with noise
    (22 * 60 + 7, 2.0, 5.0, 0.0),
])
def test_clone_shifted_scaled_offset_is_caught(base, shift_min, scale, offset_kw, noise_kw):
    source = base.device_ids[3]
    cube = sc.clone(base, source, "c-clone", shift_min, scale, offset_kw, noise_kw)
    flags = run(cube)
    assert [(f.device_id, f.reason, f.other_device) for f in flags] == [("c-clone", "clone_of", source)]
    flag = flags[0]
    assert flag.value >= flag.threshold == DistinctConfig().clone_min_corr
    assert flag.measure.startswith("residual_corr_")
    assert abs(flag.evidence["lag_min"] - shift_min) <= 3
    assert flag.evidence["kept_device"] == source
    assert len(flag.days) >= DAYS - 2


def test_exact_copy_keeps_exactly_one(base):
    source = base.device_ids[1]
    cube = sc.clone(base, source, "zz-copy", 0)
    flags = run(cube)
    assert {f.device_id for f in flags} == {"zz-copy"}           # same first data: id decides
    assert {f.reason for f in flags} == {"clone_of", "replay"}
    assert all(f.other_device == source for f in flags)


def test_replayed_days_of_another_device(base):
    target, source = base.device_ids[5], base.device_ids[2]
    cube = sc.replay_days(base, target, source, [(3, 10), (4, 11), (8, 20)])
    flags = run(cube)
    assert [(f.device_id, f.reason, f.other_device) for f in flags] == [(target, "replay", source)]
    flag = flags[0]
    assert flag.days == tuple(str(base.days[k]) for k in (10, 11, 20))
    assert flag.evidence["original_days"] == [str(base.days[k]) for k in (3, 4, 8)]
    assert flag.value == 3 and flag.measure == "identical_days"


def test_replayed_own_earlier_days(base):
    target = base.device_ids[4]
    cube = sc.replay_days(base, target, target, [(2, 16)])
    flags = run(cube)
    assert [(f.device_id, f.reason, f.other_device) for f in flags] == [(target, "replay", None)]
    assert flags[0].days == (str(base.days[16]),)
    assert flags[0].evidence["original_days"] == [str(base.days[2])]


def test_flat_power_is_caught(base):
    target = base.device_ids[6]
    flags = run(sc.flatten_power(base, target))
    assert [(f.device_id, f.reason) for f in flags] == [(target, "flat_signal")]
    assert flags[0].value < flags[0].threshold and len(flags[0].days) > 10


def test_mechanically_regular_counter_is_caught(base):
    target = base.device_ids[7]
    flags = run(sc.regular_counts(base, target))
    assert [(f.device_id, f.reason) for f in flags] == [(target, "regular_signal")]
    assert flags[0].measure == "count_per_minute_cv" and flags[0].evidence["minutes"] >= 600


def test_two_ids_with_one_identity(base):
    a, b = base.device_ids[1], base.device_ids[8]
    devices = sc.same_identity(base.devices, copy_from=a, onto=b)
    flags = run(base, devices)
    assert [(f.device_id, f.reason, f.other_device) for f in flags] == [(b, "shared_identity", a)]
    assert flags[0].evidence["identity_fingerprint"] == devices[1].identity.fingerprint()


def test_one_machine_registered_twice_shares_identity_and_endpoint(base):
    a, b = base.device_ids[4], base.device_ids[2]
    devices = sc.same_identity(base.devices, copy_from=a, onto=b, keep_endpoint=False)
    flags = run(base, devices)
    # Same first data: the smaller id is kept, the other carries both reasons.
    assert sorted((f.device_id, f.reason, f.other_device) for f in flags) == [
        (a, "shared_endpoint", b), (a, "shared_identity", b)]
    assert all(f.evidence["kept_device"] == b for f in flags)


def test_one_endpoint_posing_as_several(base):
    modbus = [d.id for d in base.devices if d.protocol == "modbus"]
    src, posers = modbus[0], modbus[1:3]
    devices = sc.same_endpoint(base.devices, src, posers)
    flags = run(base, devices)
    assert sorted((f.device_id, f.reason, f.other_device) for f in flags) == \
        sorted((p, "shared_endpoint", src) for p in posers)


def test_mqtt_devices_share_a_broker_but_not_an_endpoint(base):
    mqtt = [d for d in base.devices if d.protocol == "mqtt"]
    assert len(mqtt) >= 2 and len({d.identity.endpoint for d in mqtt}) == 1
    assert only(run(base), "shared_endpoint") == []


def test_claimed_before_by_identity_lists(base):
    dev = base.devices[4]
    earlier = AgainstSet.from_lists(serials=[dev.identity.serial_number], ids=["not-here"], label="2023 voucher")
    flags = run(base, against=earlier)
    assert [(f.device_id, f.reason, f.measure) for f in flags] == [(dev.id, "claimed_before", "serial_number")]
    assert flags[0].evidence["against"] == "2023 voucher"


def test_claimed_before_by_identical_days_in_an_earlier_store(base):
    src = base.device_ids[9]
    old = sc.fake_device("old-press")
    earlier = RollupCube([old], base.days, base.data[[base.device_ids.index(src)]], base.present[[9]])
    against = AgainstSet.from_devices(earlier.devices, device_features(earlier), label="earlier store")
    flags = run(base, against=against)
    assert [(f.device_id, f.reason, f.other_device) for f in flags] == [(src, "claimed_before", "old-press")]
    assert flags[0].measure == "identical_days_in_earlier_claim" and flags[0].value >= DAYS - 5


def test_timestamps_too_regular_for_a_network(base):
    a, b = base.device_ids[0], base.device_ids[1]
    timing = {a: sc.regular_timestamps(base.days[0], 0.5), b: sc.network_timestamps(base.days[0], 0.5)}
    flags = run(base, raw_timing=timing)
    assert [(f.device_id, f.reason) for f in flags] == [(a, "regular_timestamps")]
    assert flags[0].value < flags[0].threshold and flags[0].days == (str(base.days[0]),)


def test_several_frauds_at_once_each_with_its_reason(base):
    ids = base.device_ids
    cube = sc.clone(base, ids[2], "x-clone", 90, 1.5, 1.0)
    cube = sc.replay_days(cube, ids[6], ids[0], [(1, 25)])
    cube = sc.flatten_power(cube, ids[10])
    devices = sc.same_identity(cube.devices, ids[3], ids[11])
    got = {(f.device_id, f.reason) for f in run(cube, devices)}
    assert got == {("x-clone", "clone_of"), (ids[6], "replay"), (ids[10], "flat_signal"),
                   (ids[11], "shared_identity")}


def test_chunking_does_not_change_the_result(base):
    cube = sc.clone(base, base.device_ids[0], "c-clone", 200, 1.1)
    whole = find_flags(device_features(cube), cube.devices)
    chunked = run(cube)
    assert [f.to_dict() for f in whole] == [f.to_dict() for f in chunked] and whole
