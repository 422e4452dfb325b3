"""edge.plausibility.fix_timestamps: samples outside the plausible window get the arrival time."""
from __future__ import annotations

import datetime as dt

import pytest

from edge.model import Quality, Sample
from edge.plausibility import MAX_FUTURE_S, MAX_PAST_S, fix_timestamps

from .timebase import DAY0_NS, DAY_NS, MIN_NS, S_NS

NOW = DAY0_NS + 600 * MIN_NS
YEAR_2100_NS = int(dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc).timestamp()) * S_NS


def sample(ts_ns: int, signal: str = "count_total", value=5, quality=Quality.GOOD) -> Sample:
    return Sample("m1", signal, ts_ns, value, quality)


def test_a_clock_never_set_gets_the_arrival_time_and_is_uncertain():
    out, n = fix_timestamps([sample(1000 * S_NS)], NOW)
    assert n == 1
    assert out == [sample(NOW, quality=Quality.UNCERTAIN)]


def test_a_timestamp_in_2100_gets_the_arrival_time():
    out, n = fix_timestamps([sample(YEAR_2100_NS, "power_kw", 3.5)], NOW)
    assert (n, out[0].ts_ns, out[0].value, out[0].quality) == (1, NOW, 3.5, Quality.UNCERTAIN)


def test_plausible_batches_are_returned_as_they_are():
    batch = [sample(NOW - 3 * DAY_NS), sample(NOW), sample(NOW + 60 * S_NS, "state", "running")]
    out, n = fix_timestamps(batch, NOW)
    assert n == 0 and out is batch


def test_the_window_edges_are_plausible():
    past, future = NOW - int(MAX_PAST_S * S_NS), NOW + int(MAX_FUTURE_S * S_NS)
    assert fix_timestamps([sample(past), sample(future, "power_kw")], NOW)[1] == 0
    assert fix_timestamps([sample(past - 1), sample(future + 1, "power_kw")], NOW)[1] == 2


def test_a_replayed_backlog_of_two_weeks_keeps_its_timestamps():
    backlog = [sample(NOW - 14 * DAY_NS + k * S_NS, value=k) for k in range(10)]
    assert fix_timestamps(backlog, NOW) == (backlog, 0)


def test_bad_samples_stay_bad_and_plausible_ones_are_untouched():
    good = sample(NOW - S_NS, "power_kw", 1.0)
    out, n = fix_timestamps([sample(0, "state", "", Quality.BAD), good], NOW)
    assert n == 1 and out[0].quality is Quality.BAD and out[0].ts_ns == NOW and out[1] is good


def test_several_readings_of_one_signal_moved_together_stay_distinct_and_in_order():
    # The store keeps one sample per signal and instant: moved to one instant, nine would vanish.
    batch = [sample((1000 + k) * S_NS, value=k) for k in range(10)] + [sample(2000 * S_NS, "power_kw", 1.0)]
    out, n = fix_timestamps(batch, NOW)
    assert n == 11
    counts = [x for x in out if x.signal == "count_total"]
    assert [x.value for x in counts] == list(range(10))
    assert [x.ts_ns for x in counts] == [NOW + k for k in range(10)]
    assert out[-1].ts_ns == NOW


def test_fixed_samples_make_no_1970_rollup_day(store):
    batch = [sample(1000 * S_NS, value=0), sample(1001 * S_NS, value=4), sample(NOW + 30 * S_NS, value=9)]
    fixed, _ = fix_timestamps(batch, NOW)
    store.write_samples(fixed)
    store.roll_up(NOW + 5 * MIN_NS)
    assert [r["day"] for r in store.rollup_day_summaries()] == [dt.date(2024, 3, 10)]


@pytest.mark.parametrize("past, future", [(0, 300), (-1, 300), (86_400, -1)])
def test_the_window_must_be_sensible(past, future):
    with pytest.raises(ValueError):
        fix_timestamps([], NOW, past, future)
