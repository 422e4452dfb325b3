"""Store.roll_up: incremental, late samples, day boundaries, restarts."""
from __future__ import annotations

import datetime as dt

import numpy as np

from edge.model import Quality, Sample
from edge.rollup import RollupConfig, rollup_minutes
from edge.rollup_layout import F, MINUTES_PER_DAY
from edge.store import Store

from .timebase import DAY0_NS, DAY_NS, MIN_NS, S_NS

DAY0 = dt.date(2024, 3, 10)


def machine(start_ns: int, minutes: int, step_s: int = 10, dev: str = "m1") -> list[Sample]:
    """A machine running with a counter +1 per sample and 5 kW."""
    out = [Sample(dev, "state", start_ns, "running")]
    for k in range(minutes * 60 // step_s):
        t = start_ns + k * step_s * S_NS
        out += [Sample(dev, "count_total", t, k), Sample(dev, "power_kw", t, 5.0)]
    return out


def test_roll_up_writes_minutes_and_is_idempotent(store):
    store.write_samples(machine(DAY0_NS + 60 * MIN_NS, 10))
    assert store.roll_up(DAY0_NS + 70 * MIN_NS) == 1
    arr = store.rollup_day("m1", DAY0)
    assert arr[F["running_s"], 60:70].tolist() == [60.0] * 10
    # 1 part per 10 s sample interval; the last sample (at 69:50) has no later one yet.
    assert arr[F["count_total"], 60:70].tolist() == [6.0] * 9 + [5.0]
    assert arr[F["samples"], 60:70].sum() == 121
    assert store.roll_up(DAY0_NS + 70 * MIN_NS) == 0


def test_held_state_after_the_last_sample_is_rolled_up_later(store):
    store.write_samples([Sample("m1", "state", DAY0_NS, "idle")])
    store.roll_up(DAY0_NS + 2 * MIN_NS)
    store.roll_up(DAY0_NS + 10 * MIN_NS)     # no new samples, but the state is held 300 s
    arr = store.rollup_day("m1", DAY0)
    assert arr[F["idle_s"], :6].tolist() == [60.0] * 5 + [0.0]


def test_late_sample_corrects_an_already_rolled_up_minute(store):
    store.write_samples(machine(DAY0_NS, 5))
    store.roll_up(DAY0_NS + 5 * MIN_NS)
    assert store.rollup_day("m1", DAY0)[F["stopped_s"], 2] == 0
    # A stop at 2:30 that arrived late (store-and-forward from a buffering device).
    store.write_samples([Sample("m1", "state", DAY0_NS + 150 * S_NS, "stopped")])
    assert store.roll_up(DAY0_NS + 5 * MIN_NS) == 1
    arr = store.rollup_day("m1", DAY0)
    assert arr[F["running_s"], :5].tolist() == [60, 60, 30, 0, 0]
    assert arr[F["stopped_s"], :5].tolist() == [0, 0, 30, 60, 60]
    assert arr[F["samples"], 2] == 13


def test_range_spanning_midnight_writes_two_day_records(store):
    start = DAY0_NS + DAY_NS - 2 * MIN_NS
    store.write_samples(machine(start, 4))
    assert store.roll_up(start + 4 * MIN_NS) == 2
    d1, d2 = store.rollup_day("m1", DAY0), store.rollup_day("m1", DAY0 + dt.timedelta(days=1))
    assert d1[F["running_s"], -2:].tolist() == [60, 60]
    assert d2[F["running_s"], :3].tolist() == [60, 60, 0]
    assert d1[F["count_total"], -2:].tolist() == [6, 6]
    assert d2[F["count_total"], :2].tolist() == [6, 5]
    assert [r["day"] for r in store.rollup_day_summaries()] == [DAY0, DAY0 + dt.timedelta(days=1)]


def test_backfill_of_many_days_matches_the_pure_function(store):
    samples = []
    for day in range(3):
        samples += machine(DAY0_NS + day * DAY_NS + 600 * MIN_NS, 120, step_s=30)
    store.write_samples(samples)
    until = DAY0_NS + 3 * DAY_NS
    assert store.roll_up(until) == 3
    whole = rollup_minutes(samples, DAY0_NS, 3 * MINUTES_PER_DAY)
    got = np.concatenate([a for _, _, a in store.rollup_days(["m1"])], axis=1)
    np.testing.assert_allclose(got, whole, rtol=1e-6)


def test_roll_up_resumes_after_restart_with_same_result(store_path, tmp_path):
    samples = machine(DAY0_NS, 30, dev="m1") + machine(DAY0_NS, 30, dev="m2")
    with Store.open(store_path) as s:
        s.write_samples(samples[: len(samples) // 2])
        s.roll_up(DAY0_NS + 10 * MIN_NS)
    with Store.open(store_path) as s:
        s.write_samples(samples[len(samples) // 2:])
        s.roll_up(DAY0_NS + 40 * MIN_NS)
        resumed = {d: a for d, _, a in s.rollup_days()}
    with Store.open(tmp_path / "once.db") as s:
        s.write_samples(samples)
        s.roll_up(DAY0_NS + 40 * MIN_NS)
        once = {d: a for d, _, a in s.rollup_days()}
    assert resumed.keys() == once.keys() == {"m1", "m2"}
    for d in once:
        np.testing.assert_array_equal(resumed[d], once[d])


def test_bad_samples_in_an_earlier_chunk_end_the_state_in_the_next(store):
    store.write_samples([Sample("m1", "state", DAY0_NS, "running"),
                         Sample("m1", "state", DAY0_NS + 30 * S_NS, "running", Quality.BAD),
                         Sample("m1", "power_kw", DAY0_NS + 30 * S_NS, 0.0, Quality.BAD),
                         Sample("m1", "power_kw", DAY0_NS + 90 * S_NS, 2.0)])
    store.roll_up(DAY0_NS + MIN_NS)
    store.roll_up(DAY0_NS + 3 * MIN_NS)
    arr = store.rollup_day("m1", DAY0)
    assert arr[F["running_s"], :3].tolist() == [30, 0, 0]
    assert arr[F["power_mean_kw"], :3].tolist() == [0, 2.0, 2.0]


def test_a_long_silence_writes_no_empty_days(store):
    store.write_samples(machine(DAY0_NS, 2))
    store.roll_up(DAY0_NS + 5 * MIN_NS)
    store.roll_up(DAY0_NS + 5 * DAY_NS)
    store.write_samples(machine(DAY0_NS + 5 * DAY_NS, 2))
    assert store.roll_up(DAY0_NS + 5 * DAY_NS + 3 * MIN_NS) == 1
    assert [r["day"] for r in store.rollup_day_summaries()] == [DAY0, DAY0 + dt.timedelta(days=5)]


def test_stale_after_s_comes_from_the_store_config(store_path):
    with Store.open(store_path, rollup=RollupConfig(stale_after_s=30)) as s:
        s.write_samples([Sample("m1", "state", DAY0_NS, "running")])
        s.roll_up(DAY0_NS + 2 * MIN_NS)
        assert s.rollup_day("m1", DAY0)[F["running_s"], :2].tolist() == [30, 0]


def test_late_samples_older_than_pruned_data_do_not_erase_rollups(store_path):
    with Store.open(store_path, retention_days=1) as s:
        s.write_samples(machine(DAY0_NS, 10))
        s.write_samples(machine(DAY0_NS + 3 * DAY_NS, 10))
        s.roll_up(DAY0_NS + 3 * DAY_NS + 10 * MIN_NS)
        before = s.rollup_day("m1", DAY0)
        assert s.prune(DAY0_NS + 3 * DAY_NS + 10 * MIN_NS) > 0
        # A straggler from day 0 arrives after its neighbours were pruned.
        s.write_samples([Sample("m1", "state", DAY0_NS + 5 * MIN_NS, "fault")])
        s.roll_up(DAY0_NS + 3 * DAY_NS + 11 * MIN_NS)
        np.testing.assert_array_equal(s.rollup_day("m1", DAY0), before)
        assert s.sample_count("m1", since_ns=DAY0_NS) > 0   # the straggler itself is kept


def test_roll_up_keeps_the_reason_code_of_each_minute(store):
    t = DAY0_NS + 60 * MIN_NS
    samples = machine(t, 10) + [
        Sample("m1", "state", t + 3 * MIN_NS, "fault"), Sample("m1", "reason_code", t + 3 * MIN_NS, 31),
        Sample("m1", "state", t + 5 * MIN_NS, "running"), Sample("m1", "reason_code", t + 5 * MIN_NS, 0)]
    store.write_samples(samples)
    store.roll_up(DAY0_NS + 70 * MIN_NS)
    arr = store.rollup_day("m1", DAY0)
    assert arr[F["reason_code"], 60:70].tolist() == [0, 0, 0, 31, 31, 0, 0, 0, 0, 0]
