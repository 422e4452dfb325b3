"""Review days are the programme's local days (Asia/Shanghai for Guangdong), not UTC days.

Rollups are stored per UTC day, 1440 minutes each. A reader fetches the UTC days that cover the
local window and `localise` rearranges them so that row k of a cube is the local day
`days[k]`: slot m of it is the minute starting m minutes after that day's local midnight. Every
analysis then works on local days unchanged (activity per day, OEE and energy days, weekdays).

Midnights come from zoneinfo day by day, so any zone works. A day shortened by a daylight-saving
change leaves its last slots empty (no data); a 25-hour day keeps its first 24 hours and its last
hour is not read (`lost_minutes` counts such minutes that held data). Zones without daylight
saving (China has none since 1991) lose nothing.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from edge.errors import VerificationInputError
from edge.rollup_layout import F, MINUTES_PER_DAY

from .cube import RollupCube

UTC = "UTC"
NS_PER_MINUTE = 60_000_000_000


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The zone `name` (IANA, e.g. Asia/Shanghai); VerificationInputError when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise VerificationInputError(
            f"unknown time zone {name!r}: give an IANA name like Asia/Shanghai or UTC") from None


def check_zone(name: object, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise VerificationInputError(f"{where}: timezone must be an IANA name like Asia/Shanghai")
    zone(name)
    return name


def midnight_ns(day: dt.date, tz: str) -> int:
    """UTC ns of local midnight starting `day` in `tz`."""
    local = dt.datetime(day.year, day.month, day.day, tzinfo=zone(tz))
    return int(local.timestamp()) * 1_000_000_000


def day_starts_ns(days: np.ndarray, tz: str) -> np.ndarray:
    """int64 UTC ns of each local day's midnight (days: datetime64[D])."""
    if tz == UTC:
        return np.asarray(days).astype("datetime64[D]").astype("datetime64[ns]").astype(np.int64)
    return np.array([midnight_ns(_date(d), tz) for d in np.asarray(days)], dtype=np.int64)


def slot_minutes(days: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """(epoch minute (UTC) each slot starts at, whether the slot belongs to its day), both
    (len(days), 1440): the second is False past the end of a day shortened by a DST change."""
    starts = day_starts_ns(days, tz) // NS_PER_MINUTE
    ends = day_starts_ns(np.asarray(days) + 1, tz) // NS_PER_MINUTE if len(days) else starts
    m = np.arange(MINUTES_PER_DAY, dtype=np.int64)
    return starts[:, None] + m, m < (ends - starts)[:, None]


def slot_ns(days: np.ndarray, tz: str, flat_index: int) -> int:
    """UTC ns at which slot `flat_index` (day × 1440 + minute) of a cube over `days` starts."""
    k, m = divmod(int(flat_index), MINUTES_PER_DAY)
    return int(day_starts_ns(np.asarray(days)[k:k + 1], tz)[0]) + m * NS_PER_MINUTE


def local_date(ns: int, tz: str) -> dt.date:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=zone(tz)).date()


def utc_cover(start: dt.date, end: dt.date, tz: str) -> tuple[dt.date, dt.date]:
    """The UTC days holding the local days start..end (both included)."""
    first = midnight_ns(start, tz)
    last = midnight_ns(end + dt.timedelta(days=1), tz) - 1
    return _utc_date(first), _utc_date(last)


def local_span(utc_first: dt.date, utc_last: dt.date, tz: str) -> tuple[dt.date, dt.date]:
    """The local days touched by the UTC days utc_first..utc_last."""
    first = midnight_ns(utc_first, UTC)
    last = midnight_ns(utc_last + dt.timedelta(days=1), UTC) - 1
    return local_date(first, tz), local_date(last, tz)


def localise(cube: RollupCube, days: np.ndarray, tz: str) -> RollupCube:
    """A cube over UTC days rearranged onto the local `days` of `tz` (see the module's doc).
    The UTC cube must cover them (`utc_cover`); slots it does not hold stay empty."""
    days = np.asarray(days).astype("datetime64[D]")
    if tz == UTC and np.array_equal(cube.days, days):
        return dataclasses.replace(cube, tz=UTC)
    n_dev = len(cube.devices)
    data = np.zeros((n_dev, len(days), cube.data.shape[2], MINUTES_PER_DAY), dtype=cube.data.dtype)
    present = np.zeros((n_dev, len(days)), dtype=bool)
    utc0 = int(cube.days[0].astype(np.int64)) * MINUTES_PER_DAY if len(cube.days) else 0
    n_utc = len(cube.days) * MINUTES_PER_DAY
    starts = day_starts_ns(days, tz) // NS_PER_MINUTE
    ends = day_starts_ns(days + 1, tz) // NS_PER_MINUTE
    lost = 0
    for k in range(len(days)):
        # The day's minutes [lo, hi) in the UTC cube's flat minute axis, in at most three pieces.
        lo = int(starts[k]) - utc0
        hi = lo + min(int(ends[k] - starts[k]), MINUTES_PER_DAY)
        if int(ends[k] - starts[k]) > MINUTES_PER_DAY:
            lost += _minutes_with_data(cube, hi, lo + int(ends[k] - starts[k]))
        pos = max(lo, 0)
        while pos < min(hi, n_utc):
            u, m = divmod(pos, MINUTES_PER_DAY)
            take = min(MINUTES_PER_DAY - m, hi - pos)
            data[:, k, :, pos - lo:pos - lo + take] = cube.data[:, u, :, m:m + take]
            present[:, k] |= cube.present[:, u]
            pos += take
    return RollupCube(cube.devices, days, data, present, tz=tz, lost_minutes=lost)


def _minutes_with_data(cube: RollupCube, lo: int, hi: int) -> int:
    n = 0
    for pos in range(max(lo, 0), min(hi, len(cube.days) * MINUTES_PER_DAY)):
        u, m = divmod(pos, MINUTES_PER_DAY)
        n += int((cube.data[:, u, F["samples"], m] > 0).sum())
    return n


def _date(d: np.datetime64) -> dt.date:
    return dt.date.fromisoformat(str(np.datetime64(d, "D")))


def _utc_date(ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.timezone.utc).date()
