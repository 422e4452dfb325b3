"""The review window: a run of whole UTC days, both ends included.

Rollups are stored per UTC day, so the window is expressed in UTC dates; local-time rules
(shift calendars, tariff periods) are mapped onto UTC minutes by the modules that need them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from edge.errors import VerificationInputError

DEFAULT_WINDOW_DAYS = 90
# Stores keep UTC nanoseconds in int64, which cover 1677-09-21 to 2262-04-11: no data can lie
# outside, and window arithmetic in nanoseconds stays exact inside.
FIRST_DAY, LAST_DAY = dt.date(1678, 1, 1), dt.date(2261, 12, 31)


def _check_range(day: dt.date, what: str) -> None:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise VerificationInputError(
            f"{what} {day} is outside the dates a store can hold ({FIRST_DAY} – {LAST_DAY})")


@dataclass(frozen=True)
class Window:
    start: dt.date
    end: dt.date  # included

    def __post_init__(self) -> None:
        _check_range(self.start, "review window start")
        _check_range(self.end, "review window end")
        if self.end < self.start:
            raise VerificationInputError(
                f"review window ends ({self.end}) before it starts ({self.start})")

    @classmethod
    def last_days(cls, n_days: int = DEFAULT_WINDOW_DAYS, *,
                  today: dt.date | None = None) -> "Window":
        """The `n_days` whole days before `today` (today itself is incomplete, so excluded)."""
        if n_days < 1:
            raise VerificationInputError(f"window must span at least one day, got {n_days}")
        today = today or dt.datetime.now(dt.timezone.utc).date()
        return cls(today - dt.timedelta(days=n_days), today - dt.timedelta(days=1))

    def clip(self, first: dt.date, last: dt.date) -> "Window | None":
        """The part of this window between `first` and `last` (both included), or None."""
        start, end = max(self.start, first), min(self.end, last)
        return Window(start, end) if start <= end else None

    def offset(self, day: dt.date) -> int:
        """Index of `day` among the window's days (negative before its start)."""
        return (day - self.start).days

    @property
    def n_days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def days(self) -> np.ndarray:
        """The window's days as datetime64[D], consecutive."""
        return np.arange(np.datetime64(self.start, "D"), np.datetime64(self.end, "D") + 1)

    @property
    def start_ns(self) -> int:
        return _date_ns(self.start)

    @property
    def end_ns(self) -> int:
        """Exclusive: midnight UTC after the last day."""
        return _date_ns(self.end + dt.timedelta(days=1))

    def to_dict(self) -> dict[str, object]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "days": self.n_days,
                "timezone": "UTC"}


def _date_ns(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) \
        * 1_000_000_000


def parse_date(text: str, what: str = "date") -> dt.date:
    try:
        day = dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise VerificationInputError(f"{what} {text!r} is not a date like 2024-03-01") from None
    _check_range(day, what)
    return day
