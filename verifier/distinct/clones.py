"""clone_of: a device whose own fluctuations track another's, shifted in time, scaled or offset.

Two stages keep 1,000 devices fast. Screening correlates hourly residuals of all pairs at every
hourly lag with one matrix product per lag (pairs × lags in BLAS); only the few best partners of
each device above a low bar go on. The precise stage correlates the 15-minute residuals of each
signal around the screened lag (Pearson over the bins both devices have), and links the pair
when any signal reaches `clone_min_corr`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

import numpy as np

from .config import DistinctConfig
from .direction import follower_by_timestamps, follower_lag
from .features import FeatureBlock
from .links import Link
from .series import SERIES_SIGNALS

_CHUNK = 256  # devices converted from float16 at a time, to bound temporary memory


@dataclass(frozen=True)
class PairScore:
    corr: float
    signal: str
    lag_bins: float         # b(t + lag) ~ a(t), fractional
    overlap_bins: int
    per_signal: dict[str, float]


def clone_links(block: FeatureBlock, config: DistinctConfig) -> list[Link]:
    n = len(block)
    if n < 2:
        return []
    factor = max(1, 60 // int(block.settings["series_bin_min"]))
    coarse = _coarse_unit_series(block.series, factor)
    max_lag_coarse = -(-config.clone_max_lag_min // (factor * int(block.settings["series_bin_min"])))
    best = _screen(coarse, max_lag_coarse)
    links: list[Link] = []
    bin_min = int(block.settings["series_bin_min"])
    max_lag_bins = config.clone_max_lag_min // bin_min
    for a, b in _candidate_pairs(best, config):
        lag = _best_coarse_lag(coarse[a], coarse[b], max_lag_coarse)
        score = _pair_score(block.series[a], block.series[b], lag * factor,
                            factor, max_lag_bins, config.clone_quick_corr)
        if score is None or score.corr < config.clone_min_corr:
            continue
        if score.overlap_bins < config.clone_min_overlap_days * block.bins_per_day:
            continue
        links.append(_link(block, a, b, score, bin_min, config))
    return links


def with_raw_direction(links: list[Link], ids: list[str],
                       raw_timing: Mapping[str, np.ndarray] | None) -> list[Link]:
    """Clone links whose minute series showed no lag, directed by raw sample instants where
    both devices have them (`direction.follower_by_timestamps`)."""
    if not raw_timing:
        return links
    out = []
    for link in links:
        ta, tb = raw_timing.get(ids[link.a]), raw_timing.get(ids[link.b])
        found = None if link.follower is not None or ta is None or tb is None \
            else follower_by_timestamps(ta, tb)
        if found is not None:
            follower = link.b if found[0] > 0 else link.a
            link = replace(link, follower=follower, evidence={
                **link.evidence, "follower": ids[follower], "follower_delay_ms": found[1]})
        out.append(link)
    return out


def _coarse_unit_series(series: np.ndarray, factor: int) -> np.ndarray:
    """(n, S, bins) float16 -> (n, S, bins/factor) float32, each signal scaled to unit norm and
    weighted so that the inner product of two devices is the mean of their signals' correlations."""
    n, s, nb = series.shape
    nc = nb // factor
    out = np.zeros((n, s, nc), dtype=np.float32)
    for lo in range(0, n, _CHUNK):
        x = series[lo:lo + _CHUNK, :, :nc * factor].astype(np.float32)
        x = x.reshape(x.shape[0], s, nc, factor)
        with np.errstate(invalid="ignore"):
            sums = np.nansum(x, axis=3)
            counts = np.isfinite(x).sum(axis=3)
            out[lo:lo + _CHUNK] = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    out -= out.mean(axis=2, keepdims=True)
    norms = np.linalg.norm(out, axis=2, keepdims=True)
    usable = norms > 0
    out = np.where(usable, out / np.where(usable, norms, 1.0), 0.0)
    n_usable = usable.sum(axis=1, keepdims=True)
    return (out / np.sqrt(np.maximum(n_usable, 1))).astype(np.float32)


def _screen(coarse: np.ndarray, max_lag: int) -> np.ndarray:
    """Best correlation of every pair over lags -max_lag..max_lag: one matrix product per lag."""
    n, s, nc = coarse.shape
    best = np.full((n, n), -np.inf, dtype=np.float32)
    for lag in range(0, min(max_lag, nc - 1) + 1):
        left = np.ascontiguousarray(coarse[:, :, :nc - lag]).reshape(n, -1)
        right = np.ascontiguousarray(coarse[:, :, lag:]).reshape(n, -1)
        c = left @ right.T            # c[a, b] = Σ a(t) b(t + lag); c.T covers -lag
        np.maximum(best, c, out=best)
        np.maximum(best, c.T, out=best)
    np.fill_diagonal(best, -np.inf)
    return best


def _best_coarse_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> int:
    """The lag (b(t + lag) ~ a(t)) at which one screened pair matched best."""
    nc = a.shape[1]
    lags = range(-min(max_lag, nc - 1), min(max_lag, nc - 1) + 1)
    scores = [float(np.vdot(a[:, max(0, -l):nc - max(0, l)], b[:, max(0, l):nc - max(0, -l)]))
              for l in lags]
    return lags[int(np.argmax(scores))]


def _candidate_pairs(best: np.ndarray, config: DistinctConfig) -> list[tuple[int, int]]:
    k = min(config.clone_candidates_per_device, best.shape[0] - 1)
    top = np.argpartition(-best, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((best.shape[0], 0), int)
    pairs: set[tuple[int, int]] = set()
    for a in range(best.shape[0]):
        for b in top[a]:
            if best[a, b] >= config.clone_candidate_corr:
                pairs.add((a, int(b)) if a < b else (int(b), a))
    return sorted(pairs)


def _pair_score(x16: np.ndarray, y16: np.ndarray, centre: int, factor: int, max_lag: int,
                quick_min: float) -> PairScore | None:
    x, y = x16.astype(np.float32), y16.astype(np.float32)
    lags = np.arange(max(-max_lag, centre - factor - 1), min(max_lag, centre + factor + 1) + 1)
    best: PairScore | None = None
    per_signal: dict[str, float] = {}
    for s, name in enumerate(SERIES_SIGNALS):
        quick = _quick_corr(x[s], y[s], lags)
        if quick is None or quick.max() < quick_min:
            continue
        # The exact score only around the quick optimum: each exact evaluation is a regression.
        around = np.argmax(quick)
        sig_best = None
        for lag in lags[max(0, around - 1):around + 2]:
            r = _lagged_pearson(x[s], y[s], int(lag))
            if r is not None and (sig_best is None or r[0] > sig_best[0]):
                sig_best = (r[0], r[2], r[1])
        if sig_best is None:
            continue
        per_signal[name] = round(sig_best[0], 4)
        if best is None or sig_best[0] > best.corr:
            best = PairScore(sig_best[0], name, sig_best[1], sig_best[2], per_signal)
    return best


def _quick_corr(x: np.ndarray, y: np.ndarray, lags: np.ndarray) -> np.ndarray | None:
    """Uncentred correlation of x(t) and y(t + lag) over jointly present bins, for every lag:
    three dot products per lag, so honest pairs are dismissed before any regression."""
    px, py = np.isfinite(x), np.isfinite(y)
    if not px.any() or not py.any():
        return None
    x0, y0 = np.where(px, x, 0), np.where(py, y, 0)
    x2, y2 = x0 * x0, y0 * y0
    pxf, pyf = px.astype(np.float32), py.astype(np.float32)
    n = len(x)
    out = np.zeros(len(lags), dtype=np.float64)
    for k, lag in enumerate(lags):
        lo, hi = max(0, -lag), min(n, n - lag)
        if hi - lo < 3:
            continue
        xs, ys = slice(lo, hi), slice(lo + lag, hi + lag)
        denom = float(np.dot(x2[xs], pyf[ys])) * float(np.dot(y2[ys], pxf[xs]))
        if denom > 0:
            out[k] = float(np.dot(x0[xs], y0[ys])) / np.sqrt(denom)
    # A shift between two bins spreads the match over neighbouring lags.
    return np.maximum(out, np.sqrt(np.maximum(out, 0) ** 2 + np.maximum(np.roll(out, -1), 0) ** 2))


def _lagged_pearson(x: np.ndarray, y: np.ndarray, lag: int) -> tuple[float, int, float] | None:
    """(R, bins compared, fractional lag): how well y(t + lag) follows x around t.

    A shift that is not a whole number of bins spreads each of x's bins over two of y's, so y is
    regressed on x(t) and x(t + 1) together: the multiple correlation R is the Pearson
    correlation with the best blend of the two, i.e. with x shifted by the right fraction of a bin.
    """
    n = len(x)
    t0, t1 = max(0, -lag), min(n - 1, n - lag)          # t and t + 1 in x, t + lag in y
    if t1 - t0 < 3:
        return None
    a1, a2, b = x[t0:t1], x[t0 + 1:t1 + 1], y[t0 + lag:t1 + lag]
    both = np.isfinite(a1) & np.isfinite(a2) & np.isfinite(b)
    m = int(both.sum())
    if m < 3:
        return None
    a = np.stack([a1[both], a2[both]]).astype(np.float64)
    bb = b[both].astype(np.float64)
    a -= a.mean(axis=1, keepdims=True)
    bb -= bb.mean()
    gram = a @ a.T
    cross = a @ bb
    var_b = float(bb @ bb)
    if var_b == 0.0 or np.linalg.det(gram) <= 1e-9 * max(float(np.trace(gram)) ** 2, 1e-300):
        return None
    w = np.linalg.solve(gram, cross)
    r = float(np.sqrt(max(0.0, min(1.0, float(cross @ w) / var_b))))
    # y(t + lag) ≈ w0 x(t) + w1 x(t + 1): y lags x by lag - w1 / (w0 + w1) bins.
    w0, w1 = max(float(w[0]), 0.0), max(float(w[1]), 0.0)
    frac = w1 / (w0 + w1) if w0 + w1 > 0 else 0.0
    return r, m, lag - frac


def _link(block: FeatureBlock, a: int, b: int, score: PairScore, bin_min: int, config: DistinctConfig) -> Link:
    lag_min = int(round(score.lag_bins * bin_min))
    # Days on which both devices have data at this lag: the days the resemblance rests on.
    bpd = block.bins_per_day
    has_a = np.isfinite(block.series[a]).any(axis=0)
    has_b = np.isfinite(block.series[b]).any(axis=0)
    lag = int(round(score.lag_bins))
    if lag >= 0:
        both = has_a[:len(has_a) - lag] & has_b[lag:]
        offset = 0
    else:
        both = has_a[-lag:] & has_b[:len(has_b) + lag]
        offset = -lag
    day_idx = np.unique((np.nonzero(both)[0] + offset) // bpd)
    # Who copies whom, from the minute-resolution tails: the one that lags is the copy.
    fine = follower_lag(block.minute_tail[a], block.minute_tail[b], lag_min)
    follower = None if not fine else (b if fine > 0 else a)
    direction: dict[str, object] = {"follower_lag_min": fine}
    if follower is not None:
        direction["follower"] = block.device_ids[follower]
    return Link(
        a=a, b=b, reason="clone_of",
        message=(f"{{device}} tracks {{other}}: {score.signal} residual correlation "
                 f"{score.corr:.3f} ≥ {config.clone_min_corr} at a shift of {abs(lag_min)} min"),
        measure=f"residual_corr_{score.signal}",
        value=round(score.corr, 4),
        threshold=config.clone_min_corr,
        days=block.day_labels(day_idx),
        evidence={
            "lag_min": lag_min,
            "lag_meaning": f"{block.device_ids[b]}(t + lag) follows {block.device_ids[a]}(t)",
            "per_signal_corr": score.per_signal,
            "overlap_days": round(score.overlap_bins / bpd, 2),
            "resolution_min": bin_min,
            **direction,
        },
        follower=follower,
    )
