"""Which of two near-copies follows the other: the one whose signal lags is the copy.

A clone is fed from the original (a proxy re-publishing its values, a script replaying its
rollups), so whatever the original does shows up on the clone a little later. The clone check
works on 15-minute bins, too coarse for a lag of a minute or two, so each device also keeps its
last few days at minute resolution (`minute_tail`); for every linked pair the lag is measured
there by cross-correlation, around the lag the 15-minute stage found.
"""
from __future__ import annotations

import numpy as np

from edge.rollup_layout import F, MINUTES_PER_DAY

TAIL_SIGNALS: tuple[str, ...] = ("power_mean_kw", "running_s")
"""Signals kept at minute resolution for the lag: power varies within every minute of work,
running seconds show each stop and start to the second."""

_SEARCH_MIN = 30     # minutes searched either side of the 15-minute stage's lag
_MIN_OVERLAP = 360   # minutes both devices need in the tail before a lag is trusted


def minute_tail(data: np.ndarray, tail_days: int) -> np.ndarray:
    """(devices, days, fields, minutes) -> (devices, TAIL_SIGNALS, tail_days × 1440) float16
    of the last `tail_days` days, NaN where a minute has no data."""
    n_dev, n_days = data.shape[:2]
    keep = min(tail_days, n_days)
    out = np.full((n_dev, len(TAIL_SIGNALS), tail_days * MINUTES_PER_DAY), np.nan, dtype=np.float16)
    if keep == 0:
        return out
    part = data[:, n_days - keep:]
    has = part[:, :, F["samples"], :] > 0
    for s, name in enumerate(TAIL_SIGNALS):
        values = np.where(has, part[:, :, F[name], :], np.nan).reshape(n_dev, -1)
        out[:, s, (tail_days - keep) * MINUTES_PER_DAY:] = np.clip(values, -60000, 60000)
    return out


def follower_lag(a: np.ndarray, b: np.ndarray, around_min: int) -> int | None:
    """Minutes by which device b's tail follows device a's (b(t + lag) ~ a(t)); negative when a
    follows b; None when no signal overlaps enough to say. `around_min` is the coarse lag."""
    best: tuple[float, int] | None = None
    lags = range(around_min - _SEARCH_MIN, around_min + _SEARCH_MIN + 1)
    for s in range(a.shape[0]):
        x, y = a[s].astype(np.float64), b[s].astype(np.float64)
        for lag in lags:
            r = _corr_at(x, y, lag)
            if r is not None and (best is None or r > best[0]):
                best = (r, lag)
    return None if best is None else best[1]


def _corr_at(x: np.ndarray, y: np.ndarray, lag: int) -> float | None:
    n = len(x)
    lo, hi = max(0, -lag), min(n, n - lag)
    if hi - lo < _MIN_OVERLAP:
        return None
    xs, ys = x[lo:hi], y[lo + lag:hi + lag]
    both = np.isfinite(xs) & np.isfinite(ys)
    if int(both.sum()) < _MIN_OVERLAP:
        return None
    xv, yv = xs[both] - xs[both].mean(), ys[both] - ys[both].mean()
    denom = float(np.sqrt((xv @ xv) * (yv @ yv)))
    return float(xv @ yv) / denom if denom > 0 else None


_RAW_MIN_SAMPLES = 50
_RAW_FOLLOW_SHARE = 0.1   # a re-publisher answers within a tenth of the original's interval...
_RAW_LEAD_SHARE = 0.5     # ...and the original's next sample comes well after the copy's


def follower_by_timestamps(ts_a: np.ndarray, ts_b: np.ndarray) -> tuple[int, float] | None:
    """(+1 when b follows a, -1 when a follows b; the follower's median delay in ms), from raw
    sample instants, or None when they do not say.

    A copy re-published from the original (a proxy, a script forwarding its values) takes each
    sample a little after the original, always by about the same delay; two devices polled on
    their own keep an arbitrary phase. Only a delay both short (under a tenth of the interval)
    and steady decides, so the rare honest pair in near phase stays undecided: this is a tie
    break for a pair already found to be one machine, never a reason to link two devices."""
    a, b = np.unique(np.asarray(ts_a, dtype=np.int64)), np.unique(np.asarray(ts_b, dtype=np.int64))
    if len(a) < _RAW_MIN_SAMPLES or len(b) < _RAW_MIN_SAMPLES:
        return None
    for sign, (x, y) in ((1, (a, b)), (-1, (b, a))):
        delay = _delays(x, y)          # y after the latest x before it
        back = _delays(y, x)
        if delay is None or back is None:
            continue
        interval = float(np.median(np.diff(x)))
        d, spread = float(np.median(delay)), float(np.subtract(*np.percentile(delay, [75, 25])))
        if 0 < d <= _RAW_FOLLOW_SHARE * interval and spread <= _RAW_FOLLOW_SHARE * interval \
                and float(np.median(back)) >= _RAW_LEAD_SHARE * interval:
            return sign, round(d / 1e6, 3)
    return None


def _delays(lead: np.ndarray, follow: np.ndarray) -> np.ndarray | None:
    k = np.searchsorted(lead, follow, side="right") - 1
    ok = k >= 0
    if int(ok.sum()) < _RAW_MIN_SAMPLES:
        return None
    return (follow[ok] - lead[k[ok]]).astype(np.float64)
