"""edge.rollup against hand-computed minutes. Times are seconds after `T0`, a minute boundary."""
from __future__ import annotations

import numpy as np
import pytest

from edge.model import Quality, Sample
from edge.rollup import RollupConfig, rollup_minutes
from edge.rollup_layout import FIELDS, F

from .timebase import DAY0_NS, S_NS

T0 = DAY0_NS + 7 * 3600 * S_NS
BAD, UNC = Quality.BAD, Quality.UNCERTAIN


def s(signal: str, t_s: float, value, quality: Quality = Quality.GOOD, dev: str = "m1") -> Sample:
    return Sample(dev, signal, T0 + int(t_s * S_NS), value, quality)


def roll(samples, n: int, carry_in=(), **cfg) -> np.ndarray:
    out = rollup_minutes(samples, T0, n, carry_in, RollupConfig(**cfg))
    assert out.shape == (len(FIELDS), n) and out.dtype == np.float32
    return out


def row(out: np.ndarray, name: str) -> list[float]:
    return [round(float(x), 6) for x in out[F[name]]]


def test_state_change_across_a_minute_boundary():
    out = roll([s("state", 30, "running"), s("state", 80, "idle")], 3)
    assert row(out, "running_s") == [30, 20, 0]
    assert row(out, "idle_s") == [0, 40, 60]
    assert row(out, "stopped_s") == [0, 0, 0]
    assert row(out, "samples") == [1, 1, 0]


def test_uncovered_time_is_unknown_not_downtime():
    out = roll([s("state", 30, "stopped")], 1)
    assert row(out, "stopped_s") == [30]
    assert out[:6, 0].sum() == 30      # the first 30 s are in no state at all


def test_counter_wrapping_at_65535():
    out = roll([s("count_total", 10, 65530), s("count_total", 20, 65535), s("count_total", 70, 3)], 2)
    # 65535 -> 0 is one part, then 3 more: 4 parts made over 20-70 s, 40 s of them in minute 0.
    assert row(out, "count_total") == [5 + 3.2, 0.8]


def test_counter_reset_after_restart():
    out = roll([s("count_good", 10, 1000), s("count_good", 20, 1010), s("count_good", 70, 5),
                s("count_good", 90, 65), s("count_good", 110, 30000), s("count_good", 120, 30000),
                s("count_good", 130, 62000), s("count_good", 150, 5000), s("count_good", 170, 5004)], 3)
    # 1010 -> 5 is a restart (not near the top): 5 is a new base, +0; 62000 -> 5000 lands above
    # the wrap window so it is a restart too, +0, and counting resumes from 5000. (The old rule
    # added the new value at each restart: 5 and 5000 parts never made.)
    assert row(out, "count_good") == [10, 60 + 29935, 32000 + 4]


def test_wrap_heuristic_is_configurable():
    samples = [s("count_reject", 10, 900), s("count_reject", 20, 10)]
    assert row(roll(samples, 1), "count_reject") == [0]        # a reset (new base) with the 16-bit default
    assert row(roll(samples, 1, counter_modulus=1000, wrap_window=200), "count_reject") == [110]


def test_integrated_power_when_there_is_no_meter():
    out = roll([s("power_kw", 0, 6.0), s("power_kw", 30, 12.0), s("power_kw", 90, 0.0)], 2)
    assert row(out, "energy_kwh") == [round((6 * 30 + 12 * 30) / 3600, 6), round(12 * 30 / 3600, 6)]
    assert row(out, "power_mean_kw") == [9.0, 6.0]
    assert row(out, "power_max_kw") == [12.0, 12.0]     # 12 kW is held into minute 1


def test_meter_energy_wins_over_integrated_power_and_handles_reset():
    power = [s("power_kw", 0, 6.0), s("power_kw", 30, 12.0)]
    meter = [s("energy_kwh", 0, 100.0), s("energy_kwh", 50, 100.5), s("energy_kwh", 70, 0.25),
             s("energy_kwh", 110, 0.5)]
    out = roll(power + meter, 2)
    # The reset to 0.25 is a new base (+0), the meter counts on from there.
    assert row(out, "energy_kwh") == [0.5, 0.25]
    assert row(out, "power_mean_kw") == [9.0, 12.0]


def test_silence_becomes_unknown_after_stale_after_s():
    out = roll([s("state", 0, "running")], 10)
    assert row(out, "running_s") == [60] * 5 + [0] * 5
    out = roll([s("state", 0, "running"), s("power_kw", 60, 1.0)], 4, stale_after_s=90)
    # Alive until the last sample (60 s) + 90 s = 150 s.
    assert row(out, "running_s") == [60, 60, 30, 0]
    assert row(out, "energy_kwh") == [0, round(60 / 3600, 6), round(30 / 3600, 6), 0]


def test_held_state_resumes_when_the_device_speaks_again_without_a_bad_sample():
    out = roll([s("state", 0, "running"), s("power_kw", 200, 1.0)], 4, stale_after_s=60)
    # Unknown from 60 s (silence) until the power sample at 200 s, running again from there.
    assert row(out, "running_s") == [60, 0, 0, 40]


def test_bad_sample_ends_the_state_until_a_new_state_sample():
    out = roll([s("state", 0, "running"), s("power_kw", 45, 0.0, BAD), s("power_kw", 50, 1.0),
                s("state", 90, "idle")], 2)
    assert row(out, "running_s") == [45, 0]      # the good power at 50 s does not revive it
    assert row(out, "idle_s") == [0, 30]


def test_bad_state_sample_ends_the_state():
    out = roll([s("state", 0, "running"), s("state", 20, "running", BAD), s("power_kw", 30, 1.0)], 1)
    assert row(out, "running_s") == [20]
    assert row(out, "samples") == [3]


def test_unknown_state_string_counts_as_no_state():
    out = roll([s("state", 0, "running"), s("state", 20, "7", UNC), s("state", 50, "fault")], 1)
    assert row(out, "running_s") == [20]
    assert row(out, "fault_s") == [10]
    assert out[:6, 0].sum() == 30


def test_samples_exactly_on_a_minute_boundary_belong_to_the_minute_they_start():
    out = roll([s("state", 60, "setup"), s("count_total", 0, 0), s("count_total", 60, 4),
                s("power_kw", 120, 2.0)], 3)
    assert row(out, "setup_s") == [0, 60, 60]
    assert row(out, "count_total") == [4, 0, 0]     # made during [0, 60): minute 0
    assert row(out, "samples") == [1, 2, 1]
    assert row(out, "power_max_kw") == [0, 0, 2.0]


def test_carry_in_holds_state_and_counter_from_before_start():
    carry = [s("state", -10, "running"), s("count_total", -10, 100)]
    out = roll([s("count_total", 30, 105)], 6, carry_in=carry)
    # Alive until the counter sample at 30 s + 300 s.
    assert row(out, "running_s") == [60, 60, 60, 60, 60, 30]
    # 5 parts over [-10 s, 30 s): the 10 s before start belong to the minute before the range.
    assert row(out, "count_total") == [3.75, 0, 0, 0, 0, 0]
    assert row(out, "samples") == [1, 0, 0, 0, 0, 0]            # history is not counted


def test_bad_sample_in_carry_in_keeps_the_state_ended():
    carry = [s("state", -100, "running"), s("power_kw", -50, 0.0, BAD), s("power_kw", -10, 3.0)]
    out = roll([], 1, carry_in=carry)
    assert row(out, "running_s") == [0]
    assert row(out, "power_mean_kw") == [3.0]


def test_bad_and_non_numeric_values_take_no_part_in_counters():
    out = roll([s("count_total", 0, 10), s("count_total", 20, 0, BAD), s("count_total", 30, "x", UNC),
                s("count_total", 40, 12)], 1)
    assert row(out, "count_total") == [2]


def test_empty_input_gives_zeros():
    assert not roll([], 5).any()


def test_samples_past_the_range_only_spread_their_counter_increase_back():
    out = roll([s("state", 0, "running"), s("state", 30, "idle"), s("count_total", 0, 0),
                s("count_total", 61, 5)], 1)
    # 5 parts over [0, 61 s): 60/61 of them in the range's only minute.
    assert row(out, "count_total") == [round(5 * 60 / 61, 6)] and row(out, "running_s") == [30]
    assert row(out, "samples") == [3]


def _history(samples: list[Sample], start: int) -> list[Sample]:
    """What the store supplies as carry-in: per signal the last good and the last BAD sample."""
    keep: dict[tuple[str, bool], Sample] = {}
    for x in sorted(samples, key=lambda x: x.ts_ns):
        if x.ts_ns < start:
            keep[(x.signal, x.quality == BAD)] = x
    return list(keep.values())


@pytest.mark.parametrize("seed", range(5))
def test_chunked_computation_equals_whole_range(seed):
    rng = np.random.default_rng(seed)
    samples, count, meter = [], 0, 0.0
    for t in np.sort(rng.uniform(0, 1200, 400)):
        kind = rng.integers(0, 5)
        q = BAD if rng.random() < 0.03 else Quality.GOOD
        if kind == 0:
            samples.append(s("state", t, str(rng.choice(["running", "idle", "fault", "??"])), q))
        elif kind == 1:
            count = (count + int(rng.integers(0, 3000))) % 65536
            samples.append(s("count_total", t, count, q))
        elif kind == 2:
            samples.append(s("power_kw", t, float(rng.uniform(0, 20)), q))
        elif kind == 3:
            meter += float(rng.uniform(0, 0.1))
            samples.append(s("energy_kwh", t, meter, q))
        else:
            samples.append(s("other", t, 1.0, q))
    cfg = dict(stale_after_s=float(rng.uniform(20, 200)))
    whole = roll(samples, 20, **cfg)
    parts = []
    for k0, k1 in ((0, 7), (7, 13), (13, 20)):
        lo, hi = T0 + k0 * 60 * S_NS, T0 + k1 * 60 * S_NS
        # Counter increases spread back up to stale_after_s before their sample: a chunk reads
        # that much lookahead (as Store.roll_up does).
        ahead = hi + int(cfg["stale_after_s"] * S_NS)
        inside = [x for x in samples if lo <= x.ts_ns < ahead]
        parts.append(rollup_minutes(inside, lo, k1 - k0, _history(samples, lo), RollupConfig(**cfg)))
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-6, atol=1e-6)
    assert whole[F["samples"]].sum() == len(samples)


def test_reason_code_is_the_one_held_longest_in_each_minute():
    out = roll([s("state", 0, "running"), s("reason_code", 0, 0),
                s("state", 20, "fault"), s("reason_code", 20, 31),    # 31 from 0:20 ...
                s("reason_code", 50, 32),                             # ... 32 from 0:50
                s("state", 100, "running"), s("reason_code", 100, 0),  # running again at 1:40
                s("state", 130, "idle"), s("reason_code", 130, 11)], 3)
    # minute 0: 31 held 30 s, 32 held 10 s; minute 1: 32 held 40 s; minute 2: 11 held 50 s
    assert row(out, "reason_code") == [31, 32, 11]


def test_reason_code_tie_goes_to_the_smaller_code_and_bad_ends_it():
    out = roll([s("reason_code", 0, 22), s("reason_code", 30, 21),
                s("state", 60, "", BAD), s("reason_code", 60, "", BAD)], 2)
    assert row(out, "reason_code") == [21, 0]


def test_device_without_reason_codes_reports_zero():
    out = roll([s("state", 0, "fault")], 1)
    assert row(out, "reason_code") == [0]
