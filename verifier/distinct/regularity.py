"""flat_signal and regular_signal: values no real machine produces.

A running machine's power varies with its load and a part counter drifts across minute
boundaries because cycle times are never exact. Generated data tends to be a constant, or a
counter that adds exactly the same number every minute. Judged per day, so the evidence names
the days; flagged when enough running minutes are affected.

Per-minute sample counts are reported as evidence but never flag alone: a gateway polling on a
timer receives exactly the same number of samples every minute from an honest machine.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..cube import Flag
from .config import DistinctConfig
from .features import FeatureBlock
from .stats import STAT_SIGNALS, pooled_cv

_MIN_MINUTES_PER_DAY = 60  # a day with less running says nothing either way


def regularity_flags(block: FeatureBlock, config: DistinctConfig) -> list[Flag]:
    flags = list(_judge(block, config, "power_running", "flat_signal", "power_running_cv",
                        config.flat_power_cv_max, "power while running barely varies"))
    flags += _judge(block, config, "count_running", "regular_signal", "count_per_minute_cv",
                    config.regular_count_cv_max, "parts per running minute never vary")
    return flags


def _judge(block: FeatureBlock, config: DistinctConfig, signal: str, reason: str, measure: str,
           threshold: float, what: str) -> Iterator[Flag]:
    s = STAT_SIGNALS.index(signal)
    sums = block.day_stats[:, :, s, :]                       # (devices, days, 3)
    n_day, _, cv_day = pooled_cv(sums)
    regular_day = (n_day >= _MIN_MINUTES_PER_DAY) & (cv_day < threshold)
    _, spm_mean, spm_cv = pooled_cv(block.day_stats[:, :, STAT_SIGNALS.index("samples"), :].sum(axis=1))
    for i in np.nonzero(regular_day.any(axis=1))[0]:
        days = np.nonzero(regular_day[i])[0]
        pooled = sums[i, days].sum(axis=0)
        n, mean, cv = pooled_cv(pooled)
        if n < config.regular_min_minutes or not cv < threshold:
            continue
        device = block.device_ids[i]
        yield Flag(
            device_id=device,
            reason=reason,
            message=(f"{device}: {what} (coefficient of variation {float(cv):.2e} < {threshold:g} "
                     f"over {int(n)} running minutes on {len(days)} day(s))"),
            days=block.day_labels(days),
            measure=measure,
            value=float(cv),
            threshold=threshold,
            evidence={
                "minutes": int(n),
                "mean": round(float(mean), 6),
                "samples_per_minute_mean": round(float(spm_mean[i]), 3),
                "samples_per_minute_cv": None if np.isnan(spm_cv[i]) else round(float(spm_cv[i]), 6),
            },
        )
