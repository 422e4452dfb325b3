"""Capture time as evidence: was a device-day captured live, or written long after it happened?

The ledger counts, per device and hour of *source* time, how many samples were captured and how
many of them were backfilled (captured more than an hour after their source time: a generated or
imported history, a device replaying a long buffer). A review day is **live** when its
backfilled share is under the programme's `max_backfilled_share` (10 %); a backfilled day does
not count as an active day unless the reviewer accepts backfill, and the report says which
devices, how much, and when it was captured.

Stores that predate the ledger hold no capture records: capture time is then unknown, the report
says so, and every day counts as it always did. The same holds for a device's days before its
first capture record (a store upgraded to the ledger mid-way).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .cube import DeviceInfo
from .localtime import day_starts_ns, zone
from .reading import CaptureHour, Reader
from .window import Window

NS_PER_HOUR = 3_600_000_000_000


@dataclass(frozen=True)
class DeviceCapture:
    device_id: str
    known: bool                 # the device has capture records at all
    samples: np.ndarray         # (days,) samples captured for each review day's source time
    backfilled: np.ndarray      # (days,) of which backfilled
    backfilled_day: np.ndarray  # (days,) bool: share at or above the threshold
    captured_from_ns: int | None   # first and last capture instant of the backfilled days
    captured_to_ns: int | None

    @property
    def days_backfilled(self) -> int:
        return int(self.backfilled_day.sum())

    @property
    def days_captured(self) -> int:
        return int((self.samples > 0).sum())

    @property
    def backfilled_samples(self) -> int:
        return int(self.backfilled[self.backfilled_day].sum())

    def live(self) -> np.ndarray:
        """(days,) bool: the day may count as active (live, or capture time unknown)."""
        return ~self.backfilled_day


@dataclass(frozen=True)
class CaptureSummary:
    known: bool                           # any device has capture records
    max_backfilled_share: float
    accepted: bool                        # backfilled days counted anyway (--accept-backfill)
    devices: dict[str, DeviceCapture]

    def live_mask(self, device_ids: Sequence[str], n_days: int) -> np.ndarray:
        """(devices, days) bool for a chunk of devices: which of their days may be active."""
        out = np.ones((len(device_ids), n_days), dtype=bool)
        if self.accepted:
            return out
        for i, d in enumerate(device_ids):
            cap = self.devices.get(d)
            if cap is not None:
                out[i] = cap.live()
        return out

    def backfilled_devices(self) -> list[DeviceCapture]:
        return [c for c in self.devices.values() if c.days_backfilled]

    def unknown_devices(self) -> list[str]:
        return [d for d, c in self.devices.items() if not c.known]


def capture_notes(capture: CaptureSummary) -> list[str]:
    """What the report's notes say about capture time (the text report also heads with it)."""
    if not capture.known:
        return ["capture time unknown: the store(s) hold no capture records (written before "
                "the evidence ledger); every day with data was taken as captured live"]
    notes = []
    unknown = capture.unknown_devices()
    if unknown:
        notes.append(f"capture time unknown for {len(unknown)} device(s) without capture "
                     f"records ({', '.join(unknown[:10])}{', …' if len(unknown) > 10 else ''}); "
                     "their days were taken as captured live")
    backfilled = capture.backfilled_devices()
    if backfilled and capture.accepted:
        notes.append(f"BACKFILLED DATA ACCEPTED: {len(backfilled)} device(s) have days captured "
                     "long after their source time, counted anyway (--accept-backfill); this "
                     "report does not show that the data was captured when it claims")
    return notes


def device_capture(device_id: str, hours: Mapping[int, CaptureHour], days: np.ndarray, tz: str,
                   max_share: float) -> DeviceCapture:
    """Per review day (local days of `tz`) from the device's capture records by source hour;
    an hour belongs to the day its start falls in."""
    n = len(days)
    samples = np.zeros(n, dtype=np.int64)
    backfilled = np.zeros(n, dtype=np.int64)
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    if hours and n:
        starts = day_starts_ns(np.append(days, days[-1] + 1), tz)
        hour = np.fromiter(hours.keys(), dtype=np.int64, count=len(hours))
        recs = list(hours.values())
        k = np.searchsorted(starts, hour * NS_PER_HOUR, side="right") - 1
        inside = (k >= 0) & (k < n)
        for j in np.flatnonzero(inside):
            r, day = recs[j], k[j]
            samples[day] += r.samples
            backfilled[day] += r.backfilled
            first[day] = min(first[day], r.first_capture_ns)
            last[day] = max(last[day], r.last_capture_ns)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(samples > 0, backfilled / np.maximum(samples, 1), 0.0)
    flagged = (samples > 0) & (share >= max_share)
    return DeviceCapture(
        device_id, bool(hours), samples, backfilled, flagged,
        int(first[flagged].min()) if flagged.any() else None,
        int(last[flagged].max()) if flagged.any() else None)


def read_capture(reader: Reader, devices: Sequence[DeviceInfo], window: Window,
                 max_share: float, accepted: bool) -> CaptureSummary:
    """Capture records of every device over the window's days (readers without the method,
    such as benchmark generators, count as pre-ledger stores)."""
    get = getattr(reader, "capture_hours", None)
    days = window.days
    caps = {d.id: device_capture(d.id, get(d.id) if get is not None else {}, days, window.zone,
                                 max_share)
            for d in devices}
    return CaptureSummary(any(c.known for c in caps.values()), max_share, accepted, caps)


def _amount(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    if n >= 10_000:
        return f"{n / 1e3:.1f} k"
    return f"{n:,}"


def _span(lo_ns: int, hi_ns: int, tz: str) -> str:
    lo, hi = (dt.datetime.fromtimestamp(x / 1e9, tz=zone(tz)) for x in (lo_ns, hi_ns))
    end = hi.strftime("%H:%M") if lo.date() == hi.date() else hi.strftime("%Y-%m-%d %H:%M")
    return f"{lo.strftime('%Y-%m-%d %H:%M')}–{end} ({tz})"


def device_line(c: DeviceCapture, tz: str) -> str:
    """'m003: 12 of 30 days backfilled, 1.2 M samples captured 2026-11-30 14:02–14:40'."""
    when = "" if c.captured_from_ns is None or c.captured_to_ns is None \
        else f" captured {_span(c.captured_from_ns, c.captured_to_ns, tz)}"
    return (f"{c.device_id}: {c.days_backfilled} of {c.days_captured} days backfilled, "
            f"{_amount(c.backfilled_samples)} samples{when}")


def capture_lines(capture: CaptureSummary | None, tz: str) -> list[str]:
    """The text report's head block on capture time."""
    if capture is None:
        return []
    if not capture.known:
        return ["Capture time: unknown (no capture records: the store predates the evidence "
                "ledger); days counted as captured live"]
    backfilled = capture.backfilled_devices()
    if not backfilled:
        return [f"Capture time: every day captured live (under {capture.max_backfilled_share:.0%} "
                "backfilled)"]
    how = ("COUNTED anyway (--accept-backfill)" if capture.accepted
           else "not counted as active days (--accept-backfill counts them)")
    lines = [f"Capture time: {len(backfilled)} device(s) with backfilled days (at least "
             f"{capture.max_backfilled_share:.0%} of a day's samples captured more than an hour "
             f"after their source time), {how}:"]
    lines += [f"  {device_line(c, tz)}" for c in backfilled]
    return lines


def capture_to_dict(capture: CaptureSummary | None, tz: str) -> dict[str, Any] | None:
    if capture is None:
        return None
    return {
        "known": capture.known, "max_backfilled_share": capture.max_backfilled_share,
        "accepted": capture.accepted,
        "unknown_devices": capture.unknown_devices(),
        "backfilled_devices": [{
            "id": c.device_id, "days_backfilled": c.days_backfilled,
            "days_captured": c.days_captured, "backfilled_samples": c.backfilled_samples,
            "captured_from": _iso(c.captured_from_ns), "captured_to": _iso(c.captured_to_ns),
            "summary": device_line(c, tz)} for c in capture.backfilled_devices()],
    }


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")
