"""Sample batches shaped like a factory's: a few signals per machine, distinct millisecond
timestamps (VictoriaMetrics keeps milliseconds), states as text, counters as ints."""
from __future__ import annotations

from edge.model import Quality, Sample

MS = 1_000_000
STATES = ("running", "idle", "running", "stopped")


def batch(devices: list[str], t0_ns: int, n: int, step_ms: int = 250) -> list[Sample]:
    """`n` instants per device from t0_ns, `step_ms` apart: power_kw, count_total and state."""
    out = []
    for k in range(n):
        ts = t0_ns + k * step_ms * MS
        for j, d in enumerate(devices):
            out.append(Sample(d, "power_kw", ts + j * MS, 3.0 + (k % 7) * 0.5, Quality.GOOD))
            out.append(Sample(d, "count_total", ts + j * MS, k, Quality.GOOD))
            if k % 8 == 0:
                out.append(Sample(d, "state", ts + j * MS, STATES[(k // 8) % 4], Quality.GOOD))
    return out
