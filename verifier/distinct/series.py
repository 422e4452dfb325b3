"""Per-device residual series for clone detection: what is specific to one machine.

Honest machines of one type on one shift calendar share their daily shape (shift starts, breaks,
nights, weekends), so raw series of two honest machines correlate. What a clone cannot avoid
copying is the machine's *own* deviations from its usual day: its faults, slowdowns, late starts.
We bin each signal, remove the device's own typical day (per weekday when the window is long
enough) and z-normalise what is left. A copy shifted in time, scaled or offset leaves exactly the
same z-normalised residual, shifted.
"""
from __future__ import annotations

import warnings

import numpy as np

from edge.rollup_layout import F, MINUTES_PER_DAY

SERIES_SIGNALS: tuple[str, ...] = ("power_mean_kw", "count_total", "running_s")
"""Signals compared between devices, in the order of FeatureBlock.series' second axis."""


def binned_signals(data: np.ndarray, bin_min: int) -> np.ndarray:
    """(devices, days, fields, minutes) rollups -> (devices, signals, days, bins) float32.

    Power is averaged over minutes with data; counts and running seconds are summed. Bins with
    no data at all are NaN (a gap is not a zero, or every gateway outage would correlate).
    """
    n_dev, n_days = data.shape[:2]
    n_bins = MINUTES_PER_DAY // bin_min
    shape = (n_dev, n_days, n_bins, bin_min)
    has = (data[:, :, F["samples"], :] > 0).reshape(shape)
    n_has = has.sum(axis=3, dtype=np.float32)
    empty = n_has == 0
    out = np.empty((n_dev, len(SERIES_SIGNALS), n_days, n_bins), dtype=np.float32)
    for s, name in enumerate(SERIES_SIGNALS):
        values = data[:, :, F[name], :].reshape(shape)
        total = np.where(has, values, 0).sum(axis=3, dtype=np.float32)
        if name == "power_mean_kw":
            with np.errstate(invalid="ignore", divide="ignore"):
                total = total / n_has
        total[empty] = np.nan
        out[:, s] = total
    return out


def residual_series(binned: np.ndarray, days: np.ndarray, weekday_min_days: int) -> np.ndarray:
    """(devices, signals, days, bins) -> (devices, signals, days*bins) float16 residual z-scores.

    NaN marks bins without data and whole signals without variance of their own (a signal that
    only follows the calendar says nothing about which machine produced it).
    """
    n_dev, n_sig, n_days, n_bins = binned.shape
    profile_of_day = _profile_groups(days, weekday_min_days)
    resid = np.empty_like(binned)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: no data that weekday
        for group in np.unique(profile_of_day):
            sel = profile_of_day == group
            typical = np.nanmedian(binned[:, :, sel, :], axis=2, keepdims=True)
            resid[:, :, sel, :] = binned[:, :, sel, :] - typical
        flat = resid.reshape(n_dev, n_sig, n_days * n_bins)
        mean = np.nanmean(flat, axis=2, keepdims=True)
        std = np.nanstd(flat, axis=2, keepdims=True)
        scale = np.nanmean(np.abs(binned.reshape(flat.shape)), axis=2, keepdims=True)
    usable = np.isfinite(std) & (std > 1e-6 * np.nan_to_num(scale) + 1e-9)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (flat - mean) / std
    z = np.where(usable, z, np.nan)
    # float16 halves memory; z-scores need three significant digits at most.
    return np.clip(z, -60000, 60000).astype(np.float16)


def _profile_groups(days: np.ndarray, weekday_min_days: int) -> np.ndarray:
    if len(days) < weekday_min_days:
        return np.zeros(len(days), dtype=np.int64)
    # 1970-01-01 was a Thursday; +3 makes Monday 0.
    return (days.astype("datetime64[D]").astype(np.int64) + 3) % 7
