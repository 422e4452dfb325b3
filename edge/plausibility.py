"""Source timestamps a device could really have sent: a pure check the supervisor runs per batch.

A device clock that was never set (`"ts": 1000`, or a PLC's epoch of 2000-01-01 after its RTC
battery died) would put its samples in 1970 and create rollup days nobody can see; a clock
in 2100 would keep the device's held values alive, so it never goes stale. A sample whose
timestamp is outside [now - max_past_s, now + max_future_s] gets the arrival time instead and
is marked UNCERTAIN (a BAD sample stays BAD): its value is kept, the reviewer can tell.

Defaults, and why:
* `MAX_FUTURE_S` = 300 s, the rollups' default stale_after_s: a clock running fast can then
  keep a device looking alive no longer than a real last sample could. NTP-less controllers
  drift by seconds a day, far inside it.
* `MAX_PAST_S` = 30 days, the store's default raw retention: store-and-forward devices and
  MQTT persistent sessions replay backlogs after an outage, and a factory shut for the Spring
  Festival may come back two or three weeks later; such a backlog keeps its own timestamps.
  A sample older than the retention would be pruned without being rolled up anyway, while a
  clock that was never set is years off. Wire `max_past_s` to `retention_days` when the store
  keeps raw data longer or shorter than 30 days.

Several samples of one signal moved in one batch keep their order a nanosecond apart: the
store keeps one sample per signal and instant, and a replayed counter must lose no reading.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from .model import NS_PER_S, Quality, Sample

MAX_PAST_S = 30 * 86_400.0
MAX_FUTURE_S = 300.0


class BatchScan(NamedTuple):
    """What `scan_batch` found in one batch."""

    samples: Sequence[Sample]   # the batch itself when no timestamp needed fixing
    fixed: int                  # samples given the arrival time
    bad: int                    # BAD samples (the source could not read a value)


def scan_batch(batch: Sequence[Sample], now_ns: int, max_past_s: float = MAX_PAST_S,
               max_future_s: float = MAX_FUTURE_S) -> BatchScan:
    """`fix_timestamps` and the batch's BAD count in one pass: the supervisor runs it on every
    batch of every device, and two generator passes cost twice this loop."""
    lo, hi = _window(now_ns, max_past_s, max_future_s)
    bad = 0
    plausible = True
    for s in batch:
        if s.quality is _BAD:
            bad += 1
        if not lo <= s.ts_ns <= hi:
            plausible = False
    if plausible:
        return BatchScan(batch, 0, bad)
    out: list[Sample] = []
    moved: dict[tuple[str, str], int] = {}
    for s in batch:
        if lo <= s.ts_ns <= hi:
            out.append(s)
            continue
        key = (s.device_id, s.signal)
        k = moved.get(key, 0)
        moved[key] = k + 1
        out.append(s._replace(ts_ns=now_ns + k, quality=max(s.quality, Quality.UNCERTAIN)))
    return BatchScan(out, sum(moved.values()), bad)


def fix_timestamps(batch: Sequence[Sample], now_ns: int, max_past_s: float = MAX_PAST_S,
                   max_future_s: float = MAX_FUTURE_S) -> tuple[Sequence[Sample], int]:
    """(the batch with implausible timestamps replaced by `now_ns`, how many were replaced).

    `now_ns` is the batch's arrival time. The batch itself is returned when nothing needed
    fixing, so the common case costs no copy.
    """
    samples, fixed, _ = scan_batch(batch, now_ns, max_past_s, max_future_s)
    return samples, fixed


_BAD = Quality.BAD


def _window(now_ns: int, max_past_s: float, max_future_s: float) -> tuple[int, int]:
    if max_past_s <= 0 or max_future_s < 0:
        raise ValueError(f"need max_past_s > 0 and max_future_s >= 0, got {max_past_s}, {max_future_s}")
    return now_ns - int(max_past_s * NS_PER_S), now_ns + int(max_future_s * NS_PER_S)
