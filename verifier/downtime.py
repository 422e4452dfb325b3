"""Downtime events: runs of consecutive planned minutes whose dominant state is an unplanned
stop, with their state and duration; and MTBF / MTTR from the failure states among them.

Rollups keep seconds per state per minute, not the machine's stop reason codes, so an event's
"reason" is its state (idle, stopped, fault, setup). Reason codes exist only in raw samples
within the store's retention, which the verifier does not rely on. Events are found at minute
resolution: a stop shorter than a minute inside a running minute shows in the availability
seconds but not as an event. A minute with no data ends an event: unknown is not downtime.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.model import STATES

from .states import NO_DATA


@dataclass(frozen=True)
class DowntimeEvent:
    device_id: str
    start_ns: int
    minutes: int
    state: str
    duration_s: float

    def to_dict(self) -> dict[str, object]:
        return {"start": str(np.datetime64(self.start_ns, "ns").astype("datetime64[s]")) + "Z",
                "minutes": self.minutes, "state": self.state,
                "duration_s": round(self.duration_s, 1)}


@dataclass
class DeviceDowntime:
    events_by_state: dict[str, int]      # number of events per stop state
    seconds_by_state: dict[str, float]
    longest: list[DowntimeEvent]


def find_downtime(device_ids: list[str], day0_ns: int, dominant: np.ndarray,
                  seconds: np.ndarray, planned: np.ndarray, stop_states: list[int],
                  keep_longest: int = 10) -> list[DeviceDowntime]:
    """`dominant` (D, K, M) int8, `seconds` (D, K, S, M), `planned` (K, M) bool."""
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

    out = []
    for d in range(n_dev):
        sel = np.flatnonzero(dev == d)
        counts = np.bincount(state[sel], minlength=len(STATES))
        sums = np.bincount(state[sel], weights=dur[sel], minlength=len(STATES))
        top = sel[np.argsort(-dur[sel], kind="stable")[:keep_longest]]
        longest = [DowntimeEvent(device_ids[d], day0_ns + int(pos[i]) * 60_000_000_000,
                                 int(ends[i] - starts[i]), STATES[state[i]].value,
                                 float(dur[i])) for i in top]
        out.append(DeviceDowntime(
            {STATES[s].value: int(counts[s]) for s in stop_states},
            {STATES[s].value: float(sums[s]) for s in stop_states}, longest))
    return out

