"""Store.roll_up with counters: increases spread back over their interval, across runs and days."""
from __future__ import annotations

import datetime as dt

import numpy as np

from edge.model import Sample
from edge.rollup import rollup_minutes
from edge.rollup_layout import F, MINUTES_PER_DAY
from edge.store import Store

from .timebase import DAY0_NS, DAY_NS, MIN_NS, S_NS

DAY0 = dt.date(2024, 3, 10)
MIDNIGHT = DAY0_NS + DAY_NS


def per_minute(k0: int, minutes: int, start_ns: int, value0: int = 0) -> list[Sample]:
    """A counter read once a minute at :30, +60 parts a minute, and a state to keep it alive."""
    out = [Sample("m1", "state", start_ns, "running")]
    for k in range(k0, k0 + minutes):
        out.append(Sample("m1", "count_total", start_ns + k * MIN_NS + 30 * S_NS, value0 + 60 * k))
    return out


def test_parts_of_the_last_minute_before_midnight_stay_in_that_day_across_runs(store):
    start = MIDNIGHT - 10 * MIN_NS
    store.write_samples(per_minute(0, 10, start))          # last read 23:59:30
    store.roll_up(MIDNIGHT)
    store.write_samples(per_minute(10, 5, start))          # first read of the new day 00:00:30
    store.roll_up(MIDNIGHT + 5 * MIN_NS)
    d0, d1 = store.rollup_day("m1", DAY0), store.rollup_day("m1", DAY0 + dt.timedelta(days=1))
    # 23:59:30 -> 00:00:30 is 60 parts: 30 before midnight, 30 after.
    assert d0[F["count_total"], -10:].tolist() == [30] + [60] * 9
    assert d1[F["count_total"], :5].tolist() == [60] * 4 + [30]
    assert d0[F["count_total"]].sum() + d1[F["count_total"]].sum() == 14 * 60


def test_live_roll_ups_equal_one_roll_up_of_everything(store_path):
    samples = per_minute(0, 90, DAY0_NS + 600 * MIN_NS)
    with Store.open(store_path) as s:
        for k in range(1, 91):            # one write and one roll-up a minute, like the gateway
            t = DAY0_NS + (600 + k) * MIN_NS
            s.write_samples([x for x in samples if t - MIN_NS <= x.ts_ns < t])
            s.roll_up(t)
        live = s.rollup_day("m1", DAY0)
    whole = rollup_minutes(samples, DAY0_NS, MINUTES_PER_DAY)
    rolled = 690                          # the live store rolled up to 11:30, no further
    np.testing.assert_array_equal(live[:, :rolled], whole[:, :rolled])
    assert live[F["count_total"]].sum() == 89 * 60


def test_samples_stored_out_of_arrival_order_count_each_part_once(store):
    # 89 parts, one a second; the device's clock jitters so every tenth pair arrives swapped:
    # value k+1 carries the timestamp of k. Before, each swap was a reset adding the whole count.
    t0 = DAY0_NS + 600 * MIN_NS
    batch = [Sample("m1", "count_total", t0 + k * S_NS, k) for k in range(90)]
    for k in range(10, 80, 10):
        batch[k], batch[k + 1] = (Sample("m1", "count_total", t0 + k * S_NS, k + 1),
                                  Sample("m1", "count_total", t0 + (k + 1) * S_NS, k))
    store.write_samples(batch)
    store.roll_up(t0 + 10 * MIN_NS)
    assert store.rollup_day("m1", DAY0)[F["count_total"]].sum() == 89


def test_a_late_counter_sample_moves_parts_back_into_the_earlier_minute(store):
    t0 = DAY0_NS + 600 * MIN_NS
    store.write_samples([Sample("m1", "count_total", t0, 0), Sample("m1", "count_total", t0 + 3 * MIN_NS, 30)])
    store.roll_up(t0 + 5 * MIN_NS)
    assert store.rollup_day("m1", DAY0)[F["count_total"], 600:603].tolist() == [10, 10, 10]
    # A read at 2:30 arrives late: the 30 parts were all made in the first 2.5 minutes.
    store.write_samples([Sample("m1", "count_total", t0 + 150 * S_NS, 30)])
    store.roll_up(t0 + 5 * MIN_NS)
    assert store.rollup_day("m1", DAY0)[F["count_total"], 600:603].tolist() == [12, 12, 6]
