"""Counter and meter increases (edge.rollup): the worked cases of the module docstring, by hand.

Times are seconds after `T0`, a minute boundary; stale_after_s is the default 300 s.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge.model import Quality, Sample
from edge.rollup import RollupConfig, SignalColumns, rollup_columns, rollup_minutes
from edge.rollup_layout import F

from .timebase import DAY0_NS, S_NS

T0 = DAY0_NS + 7 * 3600 * S_NS


def s(signal: str, t_s: float, value, quality: Quality = Quality.GOOD) -> Sample:
    return Sample("m1", signal, T0 + int(t_s * S_NS), value, quality)


def counts(points: list[tuple[float, float]], n: int, signal: str = "count_total", **cfg) -> list[float]:
    out = rollup_minutes([s(signal, t, v) for t, v in points], T0, n, (), RollupConfig(**cfg))
    field = "energy_kwh" if signal == "energy_kwh" else signal
    return [round(float(x), 4) for x in out[F[field]]]


def test_increase_is_split_across_the_minutes_between_the_two_samples():
    # Sampled once a minute at :30: 60 parts between 0:30 and 1:30 are half in each minute.
    assert counts([(30, 100), (90, 160)], 2) == [30, 30]


def test_parts_of_a_shifts_last_minute_stay_in_that_shift():
    # Shift ends at minute 2. Samples at 1:50 and 2:10: the 20 parts made 1:50-2:00 belong to the
    # shift that ends at 2:00; the old rule put all of them in minute 2 (the next shift).
    assert counts([(110, 1000), (130, 1020)], 3) == [0, 10, 10]


def test_a_long_gap_puts_the_increase_in_the_last_stale_after_s_before_the_later_sample():
    # 0 s -> 600 s with stale_after_s 300: the device was unknown from 300 s; the 300 parts are
    # spread over [300 s, 600 s), never over minutes of no data days before.
    assert counts([(0, 100), (600, 400)], 10) == [0] * 5 + [60] * 5


def test_restart_at_a_non_zero_value_is_a_new_base_not_production():
    # A server restarting at 1000 after 5000: +0, then counting resumes from 1000.
    assert counts([(0, 4990), (30, 5000), (60, 1000), (90, 1003)], 2) == [10, 3]


def test_restart_to_zero_adds_nothing_itself():
    assert counts([(0, 5000), (60, 0), (90, 4)], 2) == [0, 4]


def test_small_decrease_is_noise_and_the_counter_resumes_from_its_high_water_mark():
    # 100 -> 98 is an out-of-order or jittery read: +0, and 98 -> 101 adds only 1 (above 100).
    assert counts([(0, 100), (20, 98), (40, 101)], 1) == [1]


def test_out_of_order_arrival_counts_the_real_parts_once():
    # 89 parts, one a second; timestamps jitter so that every tenth pair is swapped in source
    # time order. The old rule counted each swap as a reset (+ the whole counter value).
    points = [(float(k), float(k)) for k in range(90)]
    for k in range(10, 80, 10):
        points[k], points[k + 1] = (k, k + 1), (k + 1, k)
    total = sum(counts(points, 2))
    assert total == 89


def test_unordered_columns_are_ordered_by_source_time_before_rollup():
    ts = T0 + np.array([0, 40, 20], dtype=np.int64) * S_NS
    cols = {"count_total": SignalColumns(ts, np.array([0.0, 10.0, 5.0]), np.zeros(3, dtype=np.int8))}
    assert rollup_columns(cols, T0, 1)[F["count_total"]].tolist() == [10]


def test_wrap_of_a_16_bit_counter():
    # 65530 -> 65535 in [10, 20); 65535 -> 3 is 4 parts in [20, 70): 40 s in minute 0, 10 s in 1.
    assert counts([(10, 65530), (20, 65535), (70, 3)], 2) == [5 + 3.2, 0.8]


def test_wrap_of_a_32_bit_counter():
    top = 2.0**32
    assert counts([(0, top - 10), (30, 5)], 1) == [15]


def test_a_read_from_before_the_wrap_arriving_after_one_past_it_is_noise():
    # Source times jitter across the wrap: 65534, 1, 65535, 2 are 4 parts, not 65538.
    assert counts([(0, 65534), (1, 1), (2, 65535), (3, 2)], 1) == [4]


def test_a_jump_from_near_zero_to_near_the_top_is_not_production():
    assert counts([(0, 10), (20, 65000), (40, 12)], 1) == [2]


def test_decrease_far_from_the_top_is_a_reset_even_with_a_small_new_value():
    # 30000 -> 5: not near 65535, so not a wrap (it would invent 35541 parts).
    assert counts([(0, 30000), (30, 5)], 1) == [0]


def test_large_drop_is_a_reset_even_when_above_the_fraction():
    # 1500 -> 1000 stays above half of 1500, but 500 parts cannot be out-of-order noise.
    assert counts([(0, 1500), (20, 1000), (40, 1010)], 1) == [10]


def test_samples_at_the_same_instant_put_their_increase_in_that_minute():
    assert counts([(30, 10), (30, 12)], 1) == [2]


def test_negative_counter_values_take_no_part():
    assert counts([(0, 10), (20, -5), (40, 12)], 1) == [2]


@pytest.mark.parametrize("points, expected", [
    ([(30, 100.0), (90, 100.6)], [0.3, 0.3]),                 # split across minutes
    ([(0, 120.0), (60, 0.5), (90, 0.75)], [0, 0.25]),          # meter reset: new base, +0
    ([(0, 50.0), (20, 49.9), (40, 50.2)], [0.2]),              # jitter: high-water mark
])
def test_energy_meter_follows_the_same_increase_rules(points, expected):
    assert counts(points, len(expected), signal="energy_kwh") == expected


def test_increase_spreading_into_the_previous_range_needs_the_next_sample():
    # Chunked computation: minute 0 computed alone sees the sample at 90 s as lookahead.
    samples = [s("count_total", 30, 100), s("count_total", 90, 160)]
    alone = rollup_minutes(samples, T0, 1)
    assert alone[F["count_total"]].tolist() == [30]


@pytest.mark.parametrize("cfg", [dict(reset_fraction=1.0), dict(reset_fraction=-0.1), dict(max_noise_drop=-1)])
def test_reset_tunables_are_validated(cfg):
    with pytest.raises(ValueError):
        RollupConfig(**cfg)


def test_reset_tunables_change_the_classification():
    points = [(0, 1500), (20, 1000), (40, 1010)]
    assert counts(points, 1, max_noise_drop=1000) == [0]      # noise now: resumes above 1500
    assert counts([(0, 100), (20, 60), (40, 70)], 1, reset_fraction=0.7) == [10]   # a reset now
