"""Which devices really worked during the review window.

A device counts as active when all of these hold (defaults below, every one printed in the
report so a reviewer can see what was applied):

- it sent data on enough days of the window (`too_few_days` otherwise);
- on enough days it really operated: running time, counter increments, or power varying
  above noise (`inactive` otherwise) — a powered-on box that only reports "idle" is not use;
- its active days are spread over the window rather than bunched at its end, which is how
  a device connected just for acceptance looks (`bunched_at_end`);
- its identity did not change inside the window (`identity_changed`);
- its active days were captured live: a day whose samples were mostly backfilled (captured long
  after their source time, verifier.capture) is not an active day unless backfill is accepted;
  a device short of active days only because of that is flagged `backfilled_data`.

Everything is vectorised over devices × days × minutes of one cube chunk.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from edge.model import NS_PER_S

from .cube import Flag, RollupCube
from .localtime import local_date, slot_ns
from .reading import EventRecord, date_of
from .window import Window

NS_PER_MINUTE = 60 * NS_PER_S


@dataclass(frozen=True)
class ActivityConfig:
    min_data_days_share: float = 0.6      # of the window's days with any data
    min_active_days_share: float = 0.5    # of the window's days with real operation
    min_running_s_per_day: float = 600.0  # 10 minutes running makes a day active...
    min_count_per_day: float = 1.0        # ...or at least one part counted...
    power_noise_kw: float = 0.05          # ...or minute mean power with a std-dev above this
    min_first_half_share: float = 0.25    # of active days in the window's first half (even: 0.5)

    def __post_init__(self) -> None:
        for name in ("min_data_days_share", "min_active_days_share", "min_first_half_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {v}")

    def thresholds(self, n_days: int) -> dict[str, Any]:
        return {
            "min_data_days_share": self.min_data_days_share,
            "min_data_days": share_to_days(self.min_data_days_share, n_days),
            "min_active_days_share": self.min_active_days_share,
            "min_active_days": share_to_days(self.min_active_days_share, n_days),
            "min_running_s_per_day": self.min_running_s_per_day,
            "min_count_per_day": self.min_count_per_day,
            "power_noise_kw": self.power_noise_kw,
            "min_first_half_share": self.min_first_half_share,
        }


def share_to_days(share: float, n_days: int) -> int:
    # The epsilon keeps 0.6 × 5 (= 3.0000000000000004 in binary) from needing 4 days.
    return max(0, math.ceil(share * n_days - 1e-9))


@dataclass
class DeviceActivity:
    device_id: str
    first_data_ns: int | None
    last_data_ns: int | None
    days_with_data: int
    days_active: int
    running_hours: float
    count_total: float
    first_half_share: float | None     # share of active days in the window's first half
    flags: list[Flag] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return not self.flags


def analyse_activity(cube: RollupCube, config: ActivityConfig = ActivityConfig(), *,
                     identity_events: Mapping[str, Sequence[EventRecord]] | None = None,
                     window: Window | None = None,
                     live: np.ndarray | None = None,
                     installed: dt.date | None = None) -> list[DeviceActivity]:
    """Per-device activity. The rules apply to the review `window` (default: the cube's days);
    the cube may cover only part of it, the days with data, the rest counting as no data.
    `live` (devices, cube days) marks the days that may count as active (default: all); the
    others were backfilled. `installed`: the plant's first day with data when the window starts
    before it; whether active days are bunched at the end is judged from then on (a whole plant
    installed mid-window is no device's doing), the other rules still over the whole window."""
    if window is None and len(cube.days):
        window = Window(date_of(cube.days[0]), date_of(cube.days[-1]))
    n_days = window.n_days if window is not None else 0
    offset = window.offset(date_of(cube.days[0])) if window is not None and len(cube.days) else 0
    samples = cube.field("samples")
    has_minute = samples > 0
    data_day = cube.present & has_minute.any(axis=2)

    running_s = cube.field("running_s").sum(axis=2, dtype=np.float64)
    counts = np.maximum(cube.field("count_total"), 0).sum(axis=2, dtype=np.float64)
    # Devices without a total counter may still count good parts.
    counts = np.maximum(counts, np.maximum(cube.field("count_good"), 0)
                        .sum(axis=2, dtype=np.float64))
    power_std = _masked_std(cube.field("power_mean_kw"), has_minute)

    operating = data_day & ((running_s >= config.min_running_s_per_day)
                            | (counts >= config.min_count_per_day)
                            | (power_std > config.power_noise_kw))
    active_day = operating if live is None else operating & live
    backfilled_active = (operating & ~active_day).sum(axis=1)
    days_with_data = data_day.sum(axis=1)
    days_active = active_day.sum(axis=1)
    # The end of the first half of the window (from installation on), in cube days.
    since = max(window.start, installed) if window is not None and installed else None
    half_end = n_days // 2 if since is None or window is None \
        else window.offset(since) + ((window.end - since).days + 1) // 2
    half = min(max(half_end - offset, 0), len(cube.days))
    first_half = active_day[:, :half].sum(axis=1)

    first_ns, last_ns = _first_last_ns(cube, has_minute)
    th = config.thresholds(n_days)
    events = identity_events or {}
    day_names = np.datetime_as_string(cube.days, unit="D")

    out = []
    for d, info in enumerate(cube.devices):
        n_active = int(days_active[d])
        share = float(first_half[d] / n_active) if n_active else None
        flags = []
        if days_with_data[d] < th["min_data_days"]:
            flags.append(Flag(info.id, "too_few_days",
                              f"data on {int(days_with_data[d])} of {n_days} days, "
                              f"{th['min_data_days']} needed",
                              measure="days_with_data", value=float(days_with_data[d]),
                              threshold=float(th["min_data_days"])))
        if n_active < th["min_active_days"] <= n_active + backfilled_active[d]:
            flags.append(Flag(info.id, "backfilled_data",
                              f"really operating on {n_active} live days of {n_days}, "
                              f"{th['min_active_days']} needed: {int(backfilled_active[d])} more "
                              "days were backfilled (captured long after their source time; "
                              "--accept-backfill counts them)",
                              measure="days_active_live", value=float(n_active),
                              threshold=float(th["min_active_days"]),
                              evidence={"backfilled_active_days": int(backfilled_active[d])}))
        elif n_active < th["min_active_days"]:
            flags.append(Flag(info.id, "inactive",
                              f"really operating on {n_active} of {n_days} days, "
                              f"{th['min_active_days']} needed",
                              measure="days_active", value=float(n_active),
                              threshold=float(th["min_active_days"])))
        if share is not None and share < config.min_first_half_share:
            active_days = tuple(day_names[active_day[d]].tolist())
            flags.append(Flag(info.id, "bunched_at_end",
                              f"only {share:.0%} of active days fall in the window's first half "
                              f"(at least {config.min_first_half_share:.0%} expected)",
                              days=active_days, measure="first_half_active_share",
                              value=share, threshold=config.min_first_half_share))
        for ev in events.get(info.id, ()):
            flags.append(Flag(info.id, "identity_changed",
                              "identity changed during the window",
                              days=(local_date(ev.ts_ns, cube.tz).isoformat(),),
                              measure="identity_changed_events", value=1.0, threshold=0.0,
                              evidence=dict(ev.data)))
        out.append(DeviceActivity(
            device_id=info.id, first_data_ns=first_ns[d], last_data_ns=last_ns[d],
            days_with_data=int(days_with_data[d]), days_active=n_active,
            running_hours=float(running_s[d].sum() / 3600.0),
            count_total=float(counts[d].sum()), first_half_share=share, flags=flags))
    return out


def identity_events_in(events: Sequence[EventRecord], start_ns: int,
                       end_ns: int) -> dict[str, list[EventRecord]]:
    """identity_changed events inside [start_ns, end_ns), by device."""
    by_dev: dict[str, list[EventRecord]] = {}
    for ev in events:
        if ev.kind == "identity_changed" and ev.device_id and start_ns <= ev.ts_ns < end_ns:
            by_dev.setdefault(ev.device_id, []).append(ev)
    return by_dev


def _masked_std(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Std-dev over the last axis of the masked entries (0 where fewer than two)."""
    n = mask.sum(axis=-1, dtype=np.float64)
    v = np.where(mask, values, 0).astype(np.float64)
    s1 = v.sum(axis=-1)
    s2 = np.einsum("...m,...m->...", v, v)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = s2 / n - mean * mean
    return np.where(n >= 2, np.sqrt(np.maximum(var, 0)), 0.0)


def _first_last_ns(cube: RollupCube, has_minute: np.ndarray
                   ) -> tuple[list[int | None], list[int | None]]:
    flat = has_minute.reshape(has_minute.shape[0], -1)
    any_data = flat.any(axis=1)
    first = flat.argmax(axis=1)
    last = flat.shape[1] - 1 - flat[:, ::-1].argmax(axis=1)
    # The minute's start for first data, its end for last data.
    f = [slot_ns(cube.days, cube.tz, int(i)) if ok else None for i, ok in zip(first, any_data)]
    l_ = [slot_ns(cube.days, cube.tz, int(i)) + NS_PER_MINUTE if ok else None
          for i, ok in zip(last, any_data)]
    return f, l_


__all__ = ["ActivityConfig", "DeviceActivity", "analyse_activity", "identity_events_in",
           "share_to_days"]
