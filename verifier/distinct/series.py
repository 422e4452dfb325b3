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
    groups = _day_groups(binned, days, weekday_min_days)          # (devices, days)
    # Typical day per group = mean over the group's days with data (a per-device one-hot product;
    # a median would be sparser but costs a sort per group, too slow for 1,000 × 90).
    onehot = (groups[:, :, None] == np.arange(_N_GROUPS)).astype(np.float32)   # (devices, days, G)
    has = np.isfinite(binned)
    sums = np.einsum("nsdb,ndg->nsgb", np.where(has, binned, 0), onehot)
    counts = np.einsum("nsdb,ndg->nsgb", has.astype(np.float32), onehot)
    with np.errstate(invalid="ignore", divide="ignore"):
        typical = sums / counts                                              # (devices, S, G, bins)
    index = np.broadcast_to(groups[:, None, :, None], (n_dev, n_sig, n_days, 1))
    resid = binned - np.take_along_axis(typical, index, axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # signals without any data
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


_OFF_DAY = 7
_PARTIAL_DAY = 8
_N_GROUPS = 9
_OFF_SHARE = 0.2      # a day with less than this share of the device's usual activity is 'off'
_PARTIAL_SHARE = 0.6  # ... and below this share 'partial' (a short Sunday shift, a half holiday)


def _day_groups(binned: np.ndarray, days: np.ndarray, weekday_min_days: int) -> np.ndarray:
    """Which typical day each device-day is compared with: its weekday (or one group for short
    windows), and a group of its own for the device's off days (Sundays, holidays, shutdowns),
    which every machine on a calendar shares and which would otherwise dominate the residual.
    Partial days (a three-shift plant's Sunday that ends at 06:00) get a group of their own for
    the same reason: compared with a full day, every machine on the calendar deviates alike, and
    over a short window that shared deviation made honest machines look like copies."""
    n_dev, _, n_days, _ = binned.shape
    if n_days >= weekday_min_days:
        # 1970-01-01 was a Thursday; +3 makes Monday 0.
        weekday = (days.astype("datetime64[D]").astype(np.int64) + 3) % 7
    else:
        weekday = np.zeros(n_days, dtype=np.int64)
    groups = np.broadcast_to(weekday, (n_dev, n_days)).copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        activity = np.nansum(np.abs(binned), axis=3).sum(axis=1)          # (devices, days)
        has = np.isfinite(binned).any(axis=(1, 3))
        usual = np.nanmedian(np.where(has, activity, np.nan), axis=1, keepdims=True)
    usual = np.nan_to_num(usual)
    groups[activity < _PARTIAL_SHARE * usual] = _PARTIAL_DAY
    groups[activity < _OFF_SHARE * usual] = _OFF_DAY
    return groups
