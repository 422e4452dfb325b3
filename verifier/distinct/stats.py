"""Per device-day sums for the flat/regular checks, kept so days can be named in the evidence.

Sums (n, Σx, Σx²) per device and day pool exactly over any set of days, so the judgement can be
made per day and over the window from the same small arrays.
"""
from __future__ import annotations

import numpy as np

from edge.rollup_layout import F

STAT_SIGNALS: tuple[str, ...] = ("power_running", "count_running", "samples")
"""power_mean_kw and count_total over fully running minutes; samples per minute with data."""


def day_sums(data: np.ndarray, full_running_s: float) -> np.ndarray:
    """(devices, days, fields, minutes) -> (devices, days, len(STAT_SIGNALS), 3) float64 of n, Σx, Σx²."""
    samples = data[:, :, F["samples"], :]
    has = samples > 0
    running = has & (data[:, :, F["running_s"], :] >= full_running_s)
    # A device with no state signal never 'runs'; judge its power over all minutes with data.
    no_states = ~(data[:, :, F["running_s"], :] > 0).any(axis=(1, 2))
    power_mask = np.where(no_states[:, None, None], has, running)
    out = np.empty(data.shape[:2] + (len(STAT_SIGNALS), 3), dtype=np.float64)
    for s, (values, mask) in enumerate((
        (data[:, :, F["power_mean_kw"], :], power_mask),
        (data[:, :, F["count_total"], :], running),
        (samples, has),
    )):
        x = np.where(mask, values, 0).astype(np.float64)
        out[:, :, s, 0] = mask.sum(axis=2)
        out[:, :, s, 1] = x.sum(axis=2)
        out[:, :, s, 2] = (x * x).sum(axis=2)
    return out


def pooled_cv(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., 3) sums -> (n, mean, coefficient of variation); cv is NaN where mean is 0 or n < 2."""
    n, s1, s2 = sums[..., 0], sums[..., 1], sums[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
        cv = np.where((n >= 2) & (np.abs(mean) > 0), np.sqrt(var) / np.abs(mean), np.nan)
    return n, mean, cv
