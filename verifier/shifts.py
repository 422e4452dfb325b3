"""Shift calendars: which minutes of the window were planned for production.

Shifts and breaks are written in local time (China Standard Time by default; China keeps no
daylight saving, so a fixed offset is exact). An empty calendar means 24/7 production, the
default. Breaks are planned non-production time inside a shift and leave planned busy time.

```yaml
utc_offset_h: 8
holidays: [2024-02-10, 2024-02-11]
shifts:
  - {name: day, start: "08:00", end: "20:00", days: [mon, tue, wed, thu, fri, sat],
     breaks: [["12:00", "13:00"]]}
  - {name: night, start: "20:00", end: "08:00", days: [mon, tue, wed, thu, fri]}
```
A shift ending before it starts runs past midnight and belongs to the day it started on.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from edge.errors import VerificationInputError
from edge.rollup_layout import MINUTES_PER_DAY

from .localtime import UTC, slot_minutes
from .yamlfile import read_yaml, refuse_unknown_keys

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_hhmm(text: str, where: str) -> int:
    try:
        h, m = str(text).split(":")
        minute = int(h) * 60 + int(m)
    except ValueError:
        raise VerificationInputError(f"{where}: time {text!r} is not HH:MM") from None
    if not 0 <= minute <= MINUTES_PER_DAY or int(m) >= 60:
        raise VerificationInputError(f"{where}: time {text!r} out of range 00:00–24:00")
    return minute


def parse_utc_offset(value: object, where: str) -> float:
    """A local time zone's offset from UTC in hours (-12 to +14, as real zones are)."""
    try:
        hours = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise VerificationInputError(f"{where}: utc_offset_h {value!r} is not a number of hours") \
            from None
    if isinstance(value, bool) or not -12.0 <= hours <= 14.0:   # also refuses NaN
        raise VerificationInputError(
            f"{where}: utc_offset_h {value!r} is not an offset between -12 and +14 hours")
    return hours


@dataclass(frozen=True)
class Shift:
    name: str
    start_min: int
    end_min: int                          # == start_min is rejected; < start_min wraps midnight
    weekdays: frozenset[int] = frozenset(range(7))
    breaks: tuple[tuple[int, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        hm = lambda m: f"{m // 60:02d}:{m % 60:02d}"  # noqa: E731
        return {"name": self.name, "start": hm(self.start_min), "end": hm(self.end_min),
                "days": [WEEKDAYS[d] for d in sorted(self.weekdays)],
                "breaks": [[hm(a), hm(b)] for a, b in self.breaks]}


@dataclass(frozen=True)
class ShiftCalendar:
    shifts: tuple[Shift, ...] = ()
    utc_offset_h: float = 8.0
    holidays: frozenset[dt.date] = field(default_factory=frozenset)

    @property
    def is_24_7(self) -> bool:
        return not self.shifts and not self.holidays

    def planned_mask(self, days: np.ndarray, tz: str = UTC) -> np.ndarray:
        """(len(days), 1440) bool: slot planned for production, for a cube over the days of
        zone `tz` (verifier.localtime: UTC days by default)."""
        n = len(days)
        slots, in_day = slot_minutes(np.asarray(days).astype("datetime64[D]"), tz)
        offset = int(round(self.utc_offset_h * 60))
        local_abs = slots.reshape(-1) + offset
        in_day = in_day.reshape(-1)
        local_day = local_abs // MINUTES_PER_DAY           # days since 1970-01-01, local
        minute = local_abs % MINUTES_PER_DAY
        if not self.shifts:
            planned = np.ones(n * MINUTES_PER_DAY, dtype=bool)
            planned &= ~self._holiday(local_day) & in_day
            return planned.reshape(n, MINUTES_PER_DAY)
        planned = np.zeros(n * MINUTES_PER_DAY, dtype=bool)
        for s in self.shifts:
            on = self._within(s.start_min, s.end_min, minute, local_day, s.weekdays)
            for a, b in s.breaks:
                on &= ~self._within(a, b, minute, local_day, None)
            planned |= on
        return (planned & in_day).reshape(n, MINUTES_PER_DAY)

    def planned_minutes(self, days: np.ndarray, chunk_days: int = 3653, tz: str = UTC) -> int:
        """Planned minutes over `days` (consecutive), counted ten years at a time so that a long
        stretch (a window reaching centuries past the data) needs no mask of its own size."""
        if self.is_24_7 and tz == UTC:
            return len(days) * MINUTES_PER_DAY
        return sum(int(self.planned_mask(days[i:i + chunk_days], tz).sum())
                   for i in range(0, len(days), chunk_days))

    def _within(self, a: int, b: int, minute: np.ndarray, local_day: np.ndarray,
                weekdays: frozenset[int] | None) -> np.ndarray:
        def starts_ok(day: np.ndarray) -> np.ndarray:
            ok = ~self._holiday(day)
            if weekdays is not None:
                ok &= np.isin((day + 3) % 7, list(weekdays))  # 1970-01-01 was a Thursday
            return ok
        if a < b:
            return (minute >= a) & (minute < b) & starts_ok(local_day)
        return (((minute >= a) & starts_ok(local_day))
                | ((minute < b) & starts_ok(local_day - 1)))

    def _holiday(self, local_day: np.ndarray) -> np.ndarray:
        if not self.holidays:
            return np.zeros(local_day.shape, dtype=bool)
        hol = np.array([np.datetime64(h, "D").astype(np.int64) for h in self.holidays])
        return np.isin(local_day, hol)

    def to_dict(self) -> dict[str, Any]:
        return {"utc_offset_h": self.utc_offset_h,
                "shifts": [s.to_dict() for s in self.shifts] or "24/7",
                "holidays": sorted(h.isoformat() for h in self.holidays)}

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str = "calendar") -> "ShiftCalendar":
        if not isinstance(raw, Mapping):
            raise VerificationInputError(f"{where}: expected a mapping with shifts")
        refuse_unknown_keys(raw, CALENDAR_KEYS, where)
        raw_shifts = raw.get("shifts") or []
        if not isinstance(raw_shifts, list):
            raise VerificationInputError(f"{where}: shifts must be a list of shifts")
        shifts = [_shift(s, f"{where}: shifts[{i}]", i) for i, s in enumerate(raw_shifts)]
        raw_holidays = raw.get("holidays") or []
        if not isinstance(raw_holidays, list):
            raise VerificationInputError(f"{where}: holidays must be a list of dates")
        try:
            holidays = frozenset(h if isinstance(h, dt.date) else dt.date.fromisoformat(str(h))
                                 for h in raw_holidays)
        except ValueError as e:
            raise VerificationInputError(f"{where}: holidays: {e}") from None
        return cls(tuple(shifts), parse_utc_offset(raw.get("utc_offset_h", 8.0), where),
                   holidays)

    @classmethod
    def load(cls, path: str) -> "ShiftCalendar":
        return cls.from_mapping(read_yaml(path, "calendar"), path)


# `planned_states` (which machine states are planned stops) belongs to the OEE configuration;
# the calendar file carries it so a plant describes its planned time in one place.
CALENDAR_KEYS = ("utc_offset_h", "holidays", "shifts", "planned_states")
SHIFT_KEYS = ("name", "start", "end", "days", "breaks")


def _shift(s: Any, w: str, i: int) -> Shift:
    if not isinstance(s, Mapping):
        raise VerificationInputError(f"{w}: needs start and end (HH:MM)")
    refuse_unknown_keys(s, SHIFT_KEYS, w)
    try:
        start, end = parse_hhmm(s["start"], w), parse_hhmm(s["end"], w)
    except KeyError:
        raise VerificationInputError(f"{w}: needs start and end (HH:MM)") from None
    if start == end:
        raise VerificationInputError(f"{w}: start equals end")
    days = s.get("days", WEEKDAYS)
    if not isinstance(days, (list, tuple)):
        raise VerificationInputError(f"{w}: days must be a list like [mon, tue]")
    bad = [d for d in days if str(d).lower()[:3] not in WEEKDAYS]
    if bad:
        raise VerificationInputError(f"{w}: unknown days {bad}; use {', '.join(WEEKDAYS)}")
    raw_breaks = s.get("breaks") or []
    if not isinstance(raw_breaks, list) or not all(
            isinstance(b, (list, tuple)) and len(b) == 2 for b in raw_breaks):
        raise VerificationInputError(f"{w}: breaks must be a list of [start, end] pairs")
    breaks = tuple((parse_hhmm(a, w), parse_hhmm(b, w)) for a, b in raw_breaks)
    return Shift(str(s.get("name", f"shift{i + 1}")), start, end,
                 frozenset(WEEKDAYS.index(str(d).lower()[:3]) for d in days), breaks)
