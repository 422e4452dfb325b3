"""regular_timestamps: sample times too regular for a real network.

Where raw samples are still retained, the intervals between a device's distinct timestamps are
examined. Only intervals near the usual cadence count (gaps and bursts are other matters); a
real device, network and scheduler jitter those by at least tenths of a millisecond, while data
made by a program lands on an exact grid.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..cube import Flag
from .config import DistinctConfig

NS_PER_DAY = 86_400 * 1_000_000_000


def interval_regularity(ts_ns: np.ndarray) -> tuple[int, float, float] | None:
    """(intervals used, median interval in s, coefficient of variation), or None without data."""
    ts = np.unique(np.asarray(ts_ns, dtype=np.int64))
    if len(ts) < 3:
        return None
    intervals = np.diff(ts).astype(np.float64)
    median = float(np.median(intervals))
    usual = intervals[(intervals > 0.5 * median) & (intervals < 1.5 * median)]
    if len(usual) < 2:
        return None
    return len(usual), median / 1e9, float(usual.std() / usual.mean())


def timestamp_flags(
    device_ids: list[str],
    raw_timing: Mapping[str, np.ndarray] | None,
    config: DistinctConfig,
) -> list[Flag]:
    flags: list[Flag] = []
    for device in device_ids:
        ts = None if raw_timing is None else raw_timing.get(device)
        if ts is None or len(ts) == 0:
            continue
        result = interval_regularity(ts)
        if result is None:
            continue
        n, median_s, cv = result
        if n < config.timestamp_min_intervals or cv >= config.timestamp_cv_max:
            continue
        days = np.unique(np.asarray(ts, dtype=np.int64) // NS_PER_DAY).astype("datetime64[D]")
        flags.append(Flag(
            device_id=device,
            reason="regular_timestamps",
            message=(f"{device}: {n} sample intervals of {median_s:g} s vary by a coefficient of "
                     f"{cv:.2e} < {config.timestamp_cv_max:g}, too regular for a real network"),
            days=tuple(str(d) for d in days),
            measure="interval_cv",
            value=cv,
            threshold=config.timestamp_cv_max,
            evidence={"intervals": n, "median_interval_s": median_s},
        ))
    return flags
