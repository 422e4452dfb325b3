"""Shift calendars: when a machine is planned not to run (breaks, nights off, maintenance).

All machines share the factory's calendar, but each one's operators stop and start a few minutes
apart, so the windows get per-machine, per-day jitter drawn from the machine seed. The windows are
a pure function of (calendar, seed, day): asking for them twice, or in a different order, gives
the same answer, which keeps `Machine.history` and `Machine.advance` consistent.
"""
from __future__ import annotations

import random
from typing import Iterator, NamedTuple

# Guangdong factories keep China Standard Time all year (no daylight saving).
UTC_OFFSET_S = 8 * 3600
DAY_S = 86400
HOUR_S = 3600
MIN_S = 60

REASON_BREAK = 51
REASON_MAINTENANCE = 52
REASON_NO_SHIFT = 53


class Window(NamedTuple):
    start: float
    end: float
    reason: int


def local_day(ts: float) -> int:
    """Days since 1970-01-01 in factory local time."""
    return int((ts + UTC_OFFSET_S) // DAY_S)


def weekday(day: int) -> int:
    """Monday = 0; 1970-01-01 was a Thursday."""
    return (day + 3) % 7


def _day_windows(calendar: str, seed: int, day: int) -> list[Window]:
    """Planned stops of one local day, in order, not overlapping, each inside the day."""
    rng = random.Random(seed * 1_000_003 + day)
    base = day * DAY_S - UTC_OFFSET_S
    wd = weekday(day)

    def at(hour: float, jitter_min: float = 0.0) -> float:
        return base + hour * HOUR_S + rng.uniform(-jitter_min, jitter_min) * MIN_S

    def brk(hour: float) -> Window:
        start = at(hour, 6)
        return Window(start, start + rng.uniform(27, 38) * MIN_S, REASON_BREAK)

    if calendar == "continuous":
        # One planned maintenance a week, on a day and hour of this machine's own.
        rng_week = random.Random(seed * 7_919 + (day - wd))
        m_day = rng_week.randrange(7)
        m_start = rng_week.uniform(8, 15)
        m_len = rng_week.uniform(1.5, 4.0)
        if wd == m_day:
            return [Window(base + m_start * HOUR_S, base + (m_start + m_len) * HOUR_S, REASON_MAINTENANCE)]
        return []
    if calendar == "two_shift":
        if wd == 6:
            return [Window(base, base + DAY_S, REASON_NO_SHIFT)]
        return [
            Window(base, at(6.1, 6), REASON_NO_SHIFT),
            brk(11.5),
            brk(17.5),
            Window(at(21.9, 6), base + DAY_S, REASON_NO_SHIFT),
        ]
    if calendar == "three_shift":
        if wd == 6:
            return [Window(at(6.1, 6), base + DAY_S, REASON_NO_SHIFT)]
        windows = [Window(base, at(6.1, 6), REASON_NO_SHIFT)] if wd == 0 else [brk(2.5)]
        return windows + [brk(11.5), brk(19.5)]
    raise ValueError(f"unknown calendar {calendar!r}")


def iter_windows(calendar: str, seed: int, from_ts: float) -> Iterator[Window]:
    """Planned-stop windows ending after `from_ts`, in order; adjacent windows with the same
    reason (Saturday night into Sunday) are merged into one."""
    day = local_day(from_ts) - 1
    pending: Window | None = None
    while True:
        for w in _day_windows(calendar, seed, day):
            if pending is not None and w.reason == pending.reason and w.start <= pending.end:
                pending = Window(pending.start, max(pending.end, w.end), pending.reason)
                continue
            if pending is not None and pending.end > from_ts:
                yield pending
            pending = w
        day += 1
