"""Datetimes to Sample timestamps (UTC nanoseconds), exactly: no float round trip."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def datetime_to_ns(dt: datetime) -> int:
    """A naive datetime is taken as UTC (OPC UA and most devices mean UTC when they say nothing)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return ((dt - _EPOCH) // _US) * 1000
