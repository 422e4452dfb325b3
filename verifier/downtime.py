"""Downtime events: runs of consecutive planned minutes whose dominant state is an unplanned
stop, with their state, reason code and duration; and MTBF / MTTR from the failure states.

An event's reason code is the machine's own stop reason (the rollups' per-minute `reason_code`,
the code held longest in each minute): the code found on most of the event's minutes, ignoring
minutes with none. Devices that report no reason codes get events with `reason_code` None, and
their losses are attributed to the state alone. Events are found at minute resolution: a stop
shorter than a minute inside a running minute shows in the availability seconds but not as an
event. A minute with no data ends an event: unknown is not downtime.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.model import STATES
from edge.rollup_layout import MINUTES_PER_DAY as MINUTES

from .states import NO_DATA


@dataclass(frozen=True)
class DowntimeEvent:
    device_id: str
    start_ns: int
    minutes: int
    state: str
    duration_s: float
    reason_code: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {"start": str(np.datetime64(self.start_ns, "ns").astype("datetime64[s]")) + "Z",
                "minutes": self.minutes, "state": self.state, "reason_code": self.reason_code,
                "duration_s": round(self.duration_s, 1)}


def reason_key(state: str, code: int | None) -> str:
    """Pareto key of a loss: 'fault/31', or the state alone when no code was reported."""
    return f"{state}/{code}" if code else state


@dataclass
class DeviceDowntime:
    events_by_state: dict[str, int]      # number of events per stop state
    seconds_by_state: dict[str, float]
    longest: list[DowntimeEvent]
    events_by_reason: dict[str, int] = field(default_factory=dict)     # reason_key -> events
    seconds_by_reason: dict[str, float] = field(default_factory=dict)


def find_downtime(device_ids: list[str], day_starts_ns: np.ndarray, dominant: np.ndarray,
                  seconds: np.ndarray, planned: np.ndarray, stop_states: list[int],
                  keep_longest: int = 10, reasons: np.ndarray | None = None
                  ) -> list[DeviceDowntime]:
    """`day_starts_ns` (K,) UTC ns of each day's (local) midnight,
    `dominant` (D, K, M) int8, `seconds` (D, K, S, M), `planned` (K, M) bool,
    `reasons` (D, K, M) per-minute reason codes (0: none)."""
    n_dev = dominant.shape[0]
    per_dev = dominant.shape[1] * dominant.shape[2]
    down = planned[None] & np.isin(dominant, stop_states)
    code = np.where(down, dominant, NO_DATA).reshape(n_dev, per_dev)
    # A NO_DATA column after each device keeps runs from joining across devices.
    code = np.concatenate([code, np.full((n_dev, 1), NO_DATA, np.int8)], axis=1).ravel()
    secs = np.take_along_axis(seconds, np.maximum(dominant, 0)[:, :, None, :], axis=2)[:, :, 0, :]
    secs = np.where(down, secs, 0).reshape(n_dev, per_dev)
    secs = np.concatenate([secs, np.zeros((n_dev, 1), secs.dtype)], axis=1).ravel()

    prev = np.concatenate([[NO_DATA], code[:-1]])
    starts = np.flatnonzero((code != prev) & (code != NO_DATA))
    nxt = np.concatenate([code[1:], [NO_DATA]])
    ends = np.flatnonzero((code != nxt) & (code != NO_DATA)) + 1
    csum = np.concatenate([[0.0], np.cumsum(secs, dtype=np.float64)])
    dur = csum[ends] - csum[starts]
    dev = starts // (per_dev + 1)
    pos = starts % (per_dev + 1)
    state = code[starts]
    reason = _event_reasons(reasons, code, starts, n_dev, per_dev)

    out = []
    for d in range(n_dev):
        sel = np.flatnonzero(dev == d)
        counts = np.bincount(state[sel], minlength=len(STATES))
        sums = np.bincount(state[sel], weights=dur[sel], minlength=len(STATES))
        top = sel[np.argsort(-dur[sel], kind="stable")[:keep_longest]]
        longest = [DowntimeEvent(device_ids[d], int(day_starts_ns[pos[i] // MINUTES])
                                 + int(pos[i] % MINUTES) * 60_000_000_000,
                                 int(ends[i] - starts[i]), STATES[state[i]].value,
                                 float(dur[i]), int(reason[i]) or None) for i in top]
        by_reason_n: dict[str, int] = {}
        by_reason_s: dict[str, float] = {}
        for i in sel:   # events of one device: a handful, and Python dicts keep the keys readable
            key = reason_key(STATES[state[i]].value, int(reason[i]))
            by_reason_n[key] = by_reason_n.get(key, 0) + 1
            by_reason_s[key] = by_reason_s.get(key, 0.0) + float(dur[i])
        out.append(DeviceDowntime(
            {STATES[s].value: int(counts[s]) for s in stop_states},
            {STATES[s].value: float(sums[s]) for s in stop_states}, longest,
            by_reason_n, by_reason_s))
    return out


def _event_reasons(reasons: np.ndarray | None, code: np.ndarray, starts: np.ndarray,
                   n_dev: int, per_dev: int) -> np.ndarray:
    """Per event, the non-zero reason code found on most of its minutes (0: none reported)."""
    if reasons is None or starts.size == 0:
        return np.zeros(starts.size, dtype=np.int64)
    r = reasons.reshape(n_dev, per_dev).astype(np.int64)
    r = np.concatenate([r, np.zeros((n_dev, 1), np.int64)], axis=1).ravel()
    marks = np.zeros(code.size, dtype=np.int64)
    marks[starts] = 1
    event = np.cumsum(marks) - 1                     # event index of every minute ...
    inside = (code != NO_DATA) & (r > 0)             # ... used only inside events, with a code
    if not inside.any():
        return np.zeros(starts.size, dtype=np.int64)
    codes, idx = np.unique(r[inside], return_inverse=True)
    counts = np.bincount(event[inside] * codes.size + idx,
                         minlength=starts.size * codes.size).reshape(starts.size, codes.size)
    return np.where(counts.max(axis=1) > 0, codes[counts.argmax(axis=1)], 0)

