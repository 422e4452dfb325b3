"""OEE per device, line and plant, per ISO 22400-2, from minute rollups.

Within the shift calendar's planned minutes (default 24/7):

- unknown time: seconds of planned minutes with no state reported. Excluded from every
  figure and reported on its own — a gap in the data is never counted as downtime;
- planned busy time (PBT) = known planned time − time in planned stop states
  (`planned_stop` by default; each state is configurable as planned or unplanned);
- actual production time (APT) = running seconds in planned minutes;
- availability = APT / PBT; performance = ideal cycle time × produced quantity / APT;
  quality = good quantity / produced quantity; OEE = A × P × Q.

Line and plant figures sum the time and quantity components first (never average ratios).
Quantities count only within planned minutes; running outside them is reported as overtime.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from edge.model import STATES
from edge.rollup_layout import MINUTES_PER_DAY

from .cube import DeviceInfo, RollupCube
from .downtime import DeviceDowntime, find_downtime
from .localtime import day_starts_ns
from .shifts import ShiftCalendar
from .states import STATE_INDEX, dominant_state, state_indexes, state_seconds

RUNNING = STATE_INDEX["running"]


@dataclass(frozen=True)
class OeeConfig:
    calendar: ShiftCalendar = ShiftCalendar()
    planned_states: frozenset[str] = frozenset({"planned_stop"})
    failure_states: frozenset[str] = frozenset({"fault"})   # for MTBF / MTTR
    keep_longest_events: int = 10

    def __post_init__(self) -> None:
        state_indexes(self.planned_states)
        state_indexes(self.failure_states)
        if "running" in self.planned_states:
            raise ValueError("running cannot be a planned stop")

    @property
    def stop_states(self) -> list[int]:
        """Unplanned stop states: everything but running and the planned ones."""
        planned = set(state_indexes(self.planned_states))
        return [i for i in range(len(STATES)) if i != RUNNING and i not in planned]

    def to_dict(self) -> dict[str, Any]:
        return {"calendar": self.calendar.to_dict(),
                "planned_states": sorted(self.planned_states),
                "unplanned_states": [STATES[i].value for i in self.stop_states],
                "failure_states": sorted(self.failure_states)}


@dataclass
class OeeTotals:
    """Summable components; ratios are derived so lines and plants aggregate correctly."""

    planned_s: float = 0.0          # calendar-planned seconds in the window
    unknown_s: float = 0.0          # of those, no data
    planned_stop_s: float = 0.0
    busy_s: float = 0.0             # PBT
    run_s: float = 0.0              # APT
    overtime_run_s: float = 0.0     # running outside planned minutes
    ideal_run_s: float = 0.0        # ideal cycle × produced quantity (devices with a cycle)
    run_s_with_cycle: float = 0.0   # APT of the devices that have an ideal cycle time
    total: float = 0.0
    good: float = 0.0
    stop_s: dict[str, float] = field(default_factory=dict)
    stop_events: dict[str, int] = field(default_factory=dict)
    # Downtime events by the machine's own stop reason ('fault/31'; the state when no code)
    reason_s: dict[str, float] = field(default_factory=dict)
    reason_events: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    failure_s: float = 0.0
    quality_assumed: bool = False   # no good/reject counter: quality taken as 1

    def add(self, other: "OeeTotals") -> None:
        for name in ("planned_s", "unknown_s", "planned_stop_s", "busy_s", "run_s",
                     "overtime_run_s", "ideal_run_s", "run_s_with_cycle", "total", "good",
                     "failures", "failure_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.stop_s.items():
            self.stop_s[k] = self.stop_s.get(k, 0.0) + v
        for k, n in other.stop_events.items():
            self.stop_events[k] = self.stop_events.get(k, 0) + n
        for k, v in other.reason_s.items():
            self.reason_s[k] = self.reason_s.get(k, 0.0) + v
        for k, n in other.reason_events.items():
            self.reason_events[k] = self.reason_events.get(k, 0) + n
        self.quality_assumed |= other.quality_assumed

    @property
    def availability(self) -> float | None:
        return self.run_s / self.busy_s if self.busy_s > 0 else None

    @property
    def performance(self) -> float | None:
        return self.ideal_run_s / self.run_s_with_cycle if self.run_s_with_cycle > 0 else None

    @property
    def quality(self) -> float | None:
        return self.good / self.total if self.total > 0 else None

    @property
    def oee(self) -> float | None:
        a, p, q = self.availability, self.performance, self.quality
        return None if a is None or p is None or q is None else a * p * q

    @property
    def mtbf_h(self) -> float | None:
        return self.run_s / self.failures / 3600 if self.failures else None

    @property
    def mttr_h(self) -> float | None:
        return self.failure_s / self.failures / 3600 if self.failures else None

    def pareto(self) -> list[dict[str, Any]]:
        """Losses of planned busy time, largest first, with cumulative share."""
        losses = {f"{k} (unplanned stop)": v for k, v in self.stop_s.items()}
        if self.run_s_with_cycle > 0:
            losses["speed loss"] = max(self.run_s_with_cycle - self.ideal_run_s, 0.0)
        if self.total > 0 and self.run_s_with_cycle > 0:
            per_part = self.ideal_run_s / self.total if self.total else 0.0
            losses["quality loss"] = (self.total - self.good) * per_part
        ranked = sorted(((k, v) for k, v in losses.items() if v > 0), key=lambda kv: -kv[1])
        whole = sum(v for _, v in ranked) or 1.0
        out, cum = [], 0.0
        for k, v in ranked:
            cum += v
            out.append({"loss": k, "hours": round(v / 3600, 3),
                        "share": round(v / whole, 4), "cumulative_share": round(cum / whole, 4)})
        return out

    def reason_pareto(self) -> list[dict[str, Any]]:
        """Downtime events by stop reason (state/code), longest total first, with cumulative
        share: the 停机原因 Pareto. Only time in downtime events (whole minutes) counts here."""
        ranked = sorted(((k, v) for k, v in self.reason_s.items() if v > 0), key=lambda kv: -kv[1])
        whole = sum(v for _, v in ranked) or 1.0
        out, cum = [], 0.0
        for k, v in ranked:
            cum += v
            state, _, code = k.partition("/")
            out.append({"state": state, "reason_code": int(code) if code else None,
                        "events": self.reason_events.get(k, 0), "hours": round(v / 3600, 3),
                        "share": round(v / whole, 4), "cumulative_share": round(cum / whole, 4)})
        return out

    def to_dict(self) -> dict[str, Any]:
        r = lambda x, n=4: None if x is None else round(x, n)  # noqa: E731
        return {
            "availability": r(self.availability), "performance": r(self.performance),
            "quality": r(self.quality), "oee": r(self.oee),
            "quality_assumed": self.quality_assumed,
            "planned_h": r(self.planned_s / 3600, 3), "unknown_h": r(self.unknown_s / 3600, 3),
            "planned_stop_h": r(self.planned_stop_s / 3600, 3),
            "planned_busy_h": r(self.busy_s / 3600, 3), "run_h": r(self.run_s / 3600, 3),
            "overtime_run_h": r(self.overtime_run_s / 3600, 3),
            "total_count": r(self.total, 1), "good_count": r(self.good, 1),
            "downtime_h": {k: r(v / 3600, 3) for k, v in sorted(self.stop_s.items())},
            "downtime_events": dict(sorted(self.stop_events.items())),
            "failures": self.failures, "mtbf_h": r(self.mtbf_h, 3), "mttr_h": r(self.mttr_h, 3),
            "output_per_run_h": r(self.total / (self.run_s / 3600), 2) if self.run_s else None,
            "pareto": self.pareto(),
            "downtime_by_reason": self.reason_pareto(),
        }


@dataclass
class DeviceOee:
    device: DeviceInfo
    totals: OeeTotals
    downtime: DeviceDowntime
    output_per_hour: np.ndarray   # produced quantity per hour from the first (local) midnight


def analyse_oee(cube: RollupCube, config: OeeConfig = OeeConfig(),
                planned: np.ndarray | None = None, *,
                dominant: np.ndarray | None = None,
                unread_planned_s: float = 0.0) -> list[DeviceOee]:
    """Per-device OEE over the cube. `planned` (days, 1440) and `dominant`
    (states.dominant_state) may be passed in precomputed. `unread_planned_s` is planned time of
    window days outside the cube (no store holds data there): planned and unknown, never read."""
    if planned is None:
        planned = config.calendar.planned_mask(cube.days, cube.tz)
    n_dev, n_days = cube.present.shape
    secs = state_seconds(cube)
    known = np.minimum(secs.sum(axis=2, dtype=np.float32), 60.0)          # (D, K, M)
    planned_ids = state_indexes(config.planned_states)
    stop_ids = config.stop_states
    failure_ids = set(state_indexes(config.failure_states))

    all_planned = bool(planned.all())
    weights = planned.reshape(-1).astype(np.float64)

    def planned_sum(x: np.ndarray) -> np.ndarray:
        if all_planned:  # 24/7: per-day float32 sums are pairwise, hence accurate, and fast
            return x.sum(axis=-1).sum(axis=-1, dtype=np.float64)
        return x.reshape(x.shape[0], -1) @ weights

    planned_s = float(planned.sum()) * 60.0 + unread_planned_s
    known_planned = planned_sum(known)
    planned_stop = sum((planned_sum(secs[:, :, i]) for i in planned_ids), np.zeros(n_dev))
    run = planned_sum(secs[:, :, RUNNING])
    overtime = secs[:, :, RUNNING].sum(axis=-1).sum(axis=-1, dtype=np.float64) - run
    total_m, good_m, has_quality = quantities(cube)
    total = planned_sum(total_m)
    good = planned_sum(good_m)

    dom = dominant if dominant is not None else dominant_state(secs)
    downtime = find_downtime(cube.device_ids, day_starts_ns(cube.days, cube.tz), dom, secs, planned, stop_ids,
                             config.keep_longest_events, reasons=cube.field("reason_code"))
    hourly = total_m.reshape(n_dev, n_days * 24, MINUTES_PER_DAY // 24).sum(axis=2)

    out = []
    for d, info in enumerate(cube.devices):
        dt_ = downtime[d]
        cycle = info.ideal_cycle_s if info.ideal_cycle_s and info.ideal_cycle_s > 0 else None
        t = OeeTotals(
            planned_s=planned_s, unknown_s=planned_s - float(known_planned[d]),
            planned_stop_s=float(planned_stop[d]),
            busy_s=float(known_planned[d] - planned_stop[d]), run_s=float(run[d]),
            overtime_run_s=float(overtime[d]),
            ideal_run_s=float(cycle * total[d]) if cycle else 0.0,
            run_s_with_cycle=float(run[d]) if cycle else 0.0,
            total=float(total[d]),
            good=float(good[d]) if has_quality[d] else float(total[d]),
            stop_s=dict(dt_.seconds_by_state), stop_events=dict(dt_.events_by_state),
            reason_s=dict(dt_.seconds_by_reason), reason_events=dict(dt_.events_by_reason),
            failures=sum(n for s, n in dt_.events_by_state.items()
                         if STATE_INDEX[s] in failure_ids),
            failure_s=sum(v for s, v in dt_.seconds_by_state.items()
                          if STATE_INDEX[s] in failure_ids),
            quality_assumed=not bool(has_quality[d]))
        # Stop seconds by state come from all planned minutes, not only event minutes, so
        # short stops inside running minutes still count against availability.
        t.stop_s = {STATES[i].value: float(planned_sum(secs[d:d + 1, :, i])[0])
                    for i in stop_ids}
        out.append(DeviceOee(info, t, dt_, hourly[d]))
    return out


def quantities(cube: RollupCube) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Produced and good quantity per minute, and which devices report quality at all. Rollups already add across counter wraps and
    resets; negative increases (never valid) are clipped so they cannot cancel output."""
    total = np.maximum(cube.field("count_total"), 0)
    good = np.maximum(cube.field("count_good"), 0)
    reject = np.maximum(cube.field("count_reject"), 0)
    # A device without a total counter: produced = good + rejected.
    no_total = total.sum(axis=(1, 2)) <= 0
    if no_total.any():
        total = total.copy()
        total[no_total] = good[no_total] + reject[no_total]
    has_good = good.sum(axis=(1, 2)) > 0
    has_reject = reject.sum(axis=(1, 2)) > 0
    good_or_derived = np.where(has_good[:, None, None], good, np.maximum(total - reject, 0))
    return total, good_or_derived, has_good | has_reject


def aggregate(results: Iterable[DeviceOee], key=lambda r: "plant") -> dict[str, OeeTotals]:
    groups: dict[str, OeeTotals] = {}
    for r in results:
        groups.setdefault(key(r), OeeTotals()).add(r.totals)
    return groups


def by_line(r: DeviceOee) -> str:
    return r.device.line or "(no line)"
