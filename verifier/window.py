"""The review window: a run of whole local days of a time zone, both ends included.

The zone is the programme's (Asia/Shanghai for Guangdong, `timezone` in the catalog) unless
given; `tz=None` means "not decided yet" and `verify` fills in the programme's. Rollups are
stored per UTC day; readers rearrange them onto the window's local days (verifier.localtime).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from edge.errors import VerificationInputError

from .localtime import UTC, check_zone, midnight_ns, zone

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
    tz: str | None = None   # IANA zone; None: the programme's, decided by verify

    def __post_init__(self) -> None:
        if self.tz is not None:
            check_zone(self.tz, "review window")
        _check_range(self.start, "review window start")
        _check_range(self.end, "review window end")
        if self.end < self.start:
            raise VerificationInputError(
                f"review window ends ({self.end}) before it starts ({self.start})")

    @classmethod
    def last_days(cls, n_days: int = DEFAULT_WINDOW_DAYS, *,
                  today: dt.date | None = None, tz: str | None = None) -> "Window":
        """The `n_days` whole days before `today` (today itself is incomplete, so excluded);
        today is the zone's (UTC's when no zone is given)."""
        if n_days < 1:
            raise VerificationInputError(f"window must span at least one day, got {n_days}")
        today = today or dt.datetime.now(zone(tz or UTC)).date()
        return cls(today - dt.timedelta(days=n_days), today - dt.timedelta(days=1), tz)

    @property
    def zone(self) -> str:
        return self.tz or UTC

    def in_zone(self, tz: str) -> "Window":
        return Window(self.start, self.end, tz)

    def clip(self, first: dt.date, last: dt.date) -> "Window | None":
        """The part of this window between `first` and `last` (both included), or None."""
        start, end = max(self.start, first), min(self.end, last)
        return Window(start, end, self.tz) if start <= end else None

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
        """Local midnight starting the first day, as UTC ns."""
        return midnight_ns(self.start, self.zone)

    @property
    def end_ns(self) -> int:
        """Exclusive: local midnight after the last day."""
        return midnight_ns(self.end + dt.timedelta(days=1), self.zone)

    def to_dict(self) -> dict[str, object]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "days": self.n_days,
                "timezone": self.zone}


def parse_date(text: str, what: str = "date") -> dt.date:
    try:
        day = dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise VerificationInputError(f"{what} {text!r} is not a date like 2024-03-01") from None
    _check_range(day, what)
    return day
