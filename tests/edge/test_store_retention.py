"""Retention never deletes raw samples whose minutes are not rolled up (a device replaying an
old backlog): they reach the rollups before prune may remove them."""
from __future__ import annotations

import datetime as dt

from edge.model import Sample
from edge.rollup_layout import F
from edge.store import Store

from .timebase import DAY0_NS, DAY_NS, MIN_NS, S_NS

DAY0 = dt.date(2024, 3, 10)


def running(dev: str, start_ns: int, minutes: int) -> list[Sample]:
    out = [Sample(dev, "state", start_ns, "running")]
    out += [Sample(dev, "power_kw", start_ns + k * 10 * S_NS, 5.0) for k in range(minutes * 6)]
    return out


def samples_rolled_up(store: Store, dev: str, day: dt.date) -> int:
    arr = store.rollup_day(dev, day)
    return 0 if arr is None else int(arr[F["samples"]].sum())


def test_late_backlog_older_than_retention_is_rolled_up_before_prune(store_path):
    now = DAY0_NS + 40 * DAY_NS
    with Store.open(store_path, retention_days=30) as s:
        s.write_samples(running("m1", now - 30 * MIN_NS, 20))
        s.roll_up(now)
        # The device comes back and replays a backlog from 35 days ago.
        s.write_samples(running("m1", DAY0_NS + 5 * DAY_NS, 30))
        s.prune(now)
        s.roll_up(now + MIN_NS)
        assert samples_rolled_up(s, "m1", DAY0 + dt.timedelta(days=5)) == 181


def test_late_backlog_older_than_an_earlier_prune_is_rolled_up(store_path):
    now = DAY0_NS + 40 * DAY_NS
    with Store.open(store_path, retention_days=10) as s:
        s.write_samples(running("m1", DAY0_NS + 20 * DAY_NS, 10))
        s.write_samples(running("m1", now - 30 * MIN_NS, 20))
        s.roll_up(now)
        assert s.prune(now) > 0            # day 20 is gone: pruned_before is set past it
        s.write_samples(running("m1", DAY0_NS + 5 * DAY_NS, 30))
        s.roll_up(now + MIN_NS)
        s.prune(now + MIN_NS)
        s.roll_up(now + 2 * MIN_NS)
        assert samples_rolled_up(s, "m1", DAY0 + dt.timedelta(days=5)) == 181
        # What was rolled up before the prune is untouched.
        assert samples_rolled_up(s, "m1", DAY0 + dt.timedelta(days=20)) == 61


def test_prune_then_roll_up_without_late_samples_keeps_rollups(store_path):
    now = DAY0_NS + 40 * DAY_NS
    with Store.open(store_path, retention_days=30) as s:
        s.write_samples(running("m1", DAY0_NS + 5 * DAY_NS, 30))
        s.roll_up(DAY0_NS + 6 * DAY_NS)
        s.write_samples(running("m1", now - 30 * MIN_NS, 20))
        s.roll_up(now)
        assert s.prune(now) > 0
        s.roll_up(now + MIN_NS)
        assert samples_rolled_up(s, "m1", DAY0 + dt.timedelta(days=5)) == 181
