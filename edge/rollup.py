"""Minute rollups of one device, computed from its raw samples: a pure, vectorised function.

`rollup_minutes(samples, start_ns, n_minutes, carry_in)` returns a float32 array of shape
(len(FIELDS), n_minutes) for the minutes [start_ns, start_ns + n·60 s) (edge.rollup_layout
fields). `carry_in` is the device's history just before the range: for each signal its last
GOOD/UNCERTAIN sample before start, plus its last BAD sample before start (the store supplies
both). History samples never count as samples of the range; they only say what is held at start.
Samples at or after the end of the range are lookahead: they only bring the part of a counter or
meter increase that falls inside the range (see Counters); the store passes stale_after_s of them.

Rules
-----
* **Held values** (`state`, `power_kw`). A GOOD/UNCERTAIN sample holds its value from its
  timestamp until the next sample of the same signal, or until any BAD-quality sample of the
  device (the supervisor emits BAD for every signal when a device disconnects). Besides, a held
  value only counts at an instant τ when the device sent some sample (any signal, any quality)
  in (τ - stale_after_s, τ]: a killed gateway leaves no BAD sample, and its silence must become
  unknown time, not running time. A BAD sample and a GOOD one with the same timestamp: the BAD
  one is taken as earlier, so a value re-read at reconnect wins. Held seconds are split exactly
  across minute boundaries (nanosecond arithmetic).
* **State** values are State names (edge.model.State). A sample with an unknown string (the
  connector's UNCERTAIN raw code) counts as "no state" from its timestamp on. Seconds covered by
  no state are unknown (no data), never downtime: they appear in no state field.
* **Counters** (`count_total`, `count_good`, `count_reject`) and the **energy meter**
  (`energy_kwh`): cumulative values. Their GOOD/UNCERTAIN samples with a finite value >= 0 are
  taken in source-time order (columns given out of order are sorted first); each step from one
  such sample (prev, at t_a) to the next (new, at t_b) is classified:

  - *increase* (new >= prev): new - prev;
  - *wrap* (counters only): prev is within `wrap_window` below a counter width (2**16 by
    default, `counter_modulus`, and 2**32) and new < wrap_window: width - prev + new;
  - *wrap seen backwards* (counters only): prev < wrap_window and new within wrap_window below
    a width. Between two reads a counter advances a few thousand parts at most, so this is
    a read from before the wrap whose source time came after one from past it (or a glitch),
    never production: it is noise (below), not a jump of nearly the whole width;
  - *reset* (a restart): new <= `reset_fraction` * prev, or the drop prev - new exceeds
    `max_noise_drop`. The new value is a new base: the step adds 0. Why: a controller may
    come back at 0 or at a restored or preset value (a server restarting at 1000); counting
    the new value would invent that many parts. What this can lose is the parts made
    between the restart and the first sample after it;
  - *noise* (any other decrease: a jittery read, two samples whose source times are swapped):
    adds 0, and the counter only counts again above the highest value seen since the last
    reset (its high-water mark), so 100, 98, 101 adds 1, not 3.

  The increase of a step is production of the interval [max(t_a, t_b - stale_after_s), t_b),
  split across the minutes it spans in proportion to time (both samples at one instant: the
  minute of that instant). A gap longer than stale_after_s is unknown time: its increase goes
  to the last stale_after_s before the later sample, not spread over hours or days of no data.
  So a minute's increase depends on samples up to stale_after_s after it: `rollup_columns`
  reads counter and meter samples past the end of the range for that (lookahead), and a
  roll-up that learns of a new sample recomputes from stale_after_s before it.

  Worked cases (tests/edge/test_counters.py; minutes from T0, stale_after_s 300):
    30 s: 100, 90 s: 160                  -> minute 0: 30, minute 1: 30
    0 s: 100, 600 s: 400                  -> minutes 5-9: 60 each (the gap before 300 s is unknown)
    0 s: 4990, 30 s: 5000, 60 s: 1000, 90 s: 1003
                                          -> 10, 3 (restart at 1000: a new base)
    0 s: 100, 20 s: 98, 40 s: 101         -> 1 (98 is noise; counting resumes above 100)
    10 s: 65530, 20 s: 65535, 70 s: 3     -> 8.2, 0.8 (the wrap adds 4, over 20-70 s)
    0 s: 30000, 30 s: 5                   -> 0 (not near the top: a reset, not a wrap)
    0 s: 65534, 1 s: 1, 2 s: 65535, 3 s: 2 -> 4 (65535 was read before the wrap: noise)
    0 s: 1500, 20 s: 1000, 40 s: 1010     -> 10 (a 500 drop is no jitter: a reset)
    energy 0 s: 120.0, 60 s: 0.5, 90 s: 0.75 -> 0, 0.25 (meter reset: a new base)
* **Energy**: when the device has `energy_kwh` meter samples (in the range or its history), the
  meter increase per minute (rules above, without wrap); otherwise the held `power_kw`
  integrated over the covered seconds / 3600.
* `power_mean_kw`: time-weighted mean of the held power over the covered seconds of the minute
  (0 when none); `power_max_kw`: highest power value seen in or held into the minute.
* `samples`: number of samples of any signal and quality with a timestamp in the minute.
* `reason_code`: the stop reason code (`reason_code` signal, a positive integer) held for the
  most seconds of the minute, held like a state; 0 where none was held (code 0 means running,
  no reason, and ends the previous code). Ties go to the smaller code. Downtime analysis reads
  it to give events and loss Paretos their reasons.
* BAD samples, non-numeric and non-finite values (and negative counter or meter readings)
  carry no value: they take part in no counter,
  meter or power figure (a non-finite power reading ends the held power like a BAD sample of
  that signal would), but they count as samples and keep the device alive.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Iterable, Mapping, Sequence

import numpy as np

from .model import COUNTER_ROLES, NS_PER_S, STATES, Quality, Role, Sample
from .rollup_layout import FIELDS, F, STATE_FIELDS

NS_PER_MIN = 60 * NS_PER_S
_STATE_CODE = {s.value: i for i, s in enumerate(STATES)}
_BAD = int(Quality.BAD)
_U32 = float(2**32)


@dataclass(frozen=True)
class RollupConfig:
    """Tunables of the rollup rules (see the module docstring)."""

    stale_after_s: float = 300.0
    counter_modulus: float = 65536.0
    wrap_window: float = 4096.0
    reset_fraction: float = 0.5
    max_noise_drop: float = 100.0

    def __post_init__(self) -> None:
        if self.stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be > 0, got {self.stale_after_s}")
        if not 0 <= self.wrap_window < self.counter_modulus:
            raise ValueError("wrap_window must be in [0, counter_modulus)")
        if not 0 <= self.reset_fraction < 1:
            raise ValueError(f"reset_fraction must be in [0, 1), got {self.reset_fraction}")
        if self.max_noise_drop < 0:
            raise ValueError(f"max_noise_drop must be >= 0, got {self.max_noise_drop}")

    @property
    def stale_ns(self) -> int:
        return int(self.stale_after_s * NS_PER_S)

    @property
    def counter_widths(self) -> tuple[float, ...]:
        """Widths a counter can wrap at: the configured one and a 32-bit register's."""
        return tuple(sorted({self.counter_modulus, _U32}))


@dataclass(frozen=True)
class SignalColumns:
    """One signal's samples as columns, in time order (history before the range included).

    `values` is float64 for numeric signals (NaN where a value is not a number) and an object
    array of strings for `state`.
    """

    ts_ns: np.ndarray
    values: np.ndarray
    quality: np.ndarray

    @classmethod
    def from_lists(cls, ts_ns: Sequence[int], values: Sequence[object], quality: Sequence[int],
                   *, state: bool = False) -> "SignalColumns":
        ts = np.asarray(ts_ns, dtype=np.int64)
        q = np.asarray(quality, dtype=np.int8)
        vals = np.asarray(values, dtype=object) if state else numeric(values)
        if ts.shape != q.shape or ts.shape != vals.shape:
            raise ValueError("ts_ns, values and quality must have the same length")
        return cls(ts, vals, q)


def numeric(values: Sequence[object]) -> np.ndarray:
    """float64 array; anything that is not a number (text, None) becomes NaN."""
    try:
        return np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return np.array([v if isinstance(v, (int, float)) else np.nan for v in values],
                        dtype=np.float64)


def rollup_minutes(samples: Iterable[Sample], start_ns: int, n_minutes: int,
                   carry_in: Iterable[Sample] = (), config: RollupConfig = RollupConfig()) -> np.ndarray:
    """Minute rollups of one device from Samples; see the module docstring for the rules."""
    by_signal: dict[str, list[Sample]] = {}
    for s in list(carry_in) + list(samples):
        by_signal.setdefault(s.signal, []).append(s)
    columns = {}
    for name, ss in by_signal.items():
        ss.sort(key=lambda s: (s.ts_ns, s.quality != Quality.BAD))
        columns[name] = SignalColumns.from_lists(
            [s.ts_ns for s in ss], [s.value for s in ss], [int(s.quality) for s in ss],
            state=name == Role.STATE.value)
    return rollup_columns(columns, start_ns, n_minutes, config)


def rollup_columns(signals: Mapping[str, SignalColumns], start_ns: int, n_minutes: int,
                   config: RollupConfig = RollupConfig()) -> np.ndarray:
    """Minute rollups of one device from per-signal columns (history before start included).

    Samples at or after the end of the range are lookahead: only counter and meter increases
    read them (an increase is spread back over the interval before its sample)."""
    if n_minutes < 0:
        raise ValueError(f"n_minutes must be >= 0, got {n_minutes}")
    end_ns = start_ns + n_minutes * NS_PER_MIN
    out = np.zeros((len(FIELDS), n_minutes), dtype=np.float64)
    signals = {name: _in_time_order(c) for name, c in signals.items()}
    cols = {name: _before(c, end_ns) for name, c in signals.items()}
    cols = {name: c for name, c in cols.items() if c.ts_ns.size}
    if not cols or n_minutes == 0:
        return out.astype(np.float32)
    tl = _Timeline(cols, start_ns, end_ns, config.stale_after_s)

    in_range = tl.ts >= start_ns
    out[F["samples"]] = np.bincount((tl.ts[in_range] - start_ns) // NS_PER_MIN, minlength=n_minutes)

    state = cols.get(Role.STATE.value)
    if state is not None:
        codes = _state_codes(state.values)
        m, sec, code = tl.held(Role.STATE.value, codes, codes >= 0)
        n_states = len(STATE_FIELDS)
        out[: n_states] = np.bincount(m * n_states + code, weights=sec,
                                      minlength=n_minutes * n_states).reshape(n_minutes, n_states).T

    for role in COUNTER_ROLES:
        if role.value in cols:
            out[F[role.value]] = _increases(signals[role.value], start_ns, n_minutes, config, wrap=True)

    power = cols.get(Role.POWER_KW.value)
    if power is not None:
        vals = power.values.astype(np.float64)
        m, sec, kw = tl.held(Role.POWER_KW.value, vals, np.isfinite(vals))
        kw_s = np.bincount(m, weights=sec * kw, minlength=n_minutes)
        covered = np.bincount(m, weights=sec, minlength=n_minutes)
        out[F["power_mean_kw"]] = np.divide(kw_s, covered, out=np.zeros(n_minutes), where=covered > 0)
        out[F["energy_kwh"]] = kw_s / 3600.0
        peak = np.full(n_minutes, -np.inf)
        np.maximum.at(peak, m, kw)
        seen = (power.ts_ns >= start_ns) & (power.quality != _BAD) & np.isfinite(vals)
        np.maximum.at(peak, (power.ts_ns[seen] - start_ns) // NS_PER_MIN, vals[seen])
        out[F["power_max_kw"]] = np.where(np.isfinite(peak), peak, 0.0)

    reason = cols.get(Role.REASON_CODE.value)
    if reason is not None:
        out[F["reason_code"]] = _dominant_code(tl, reason, n_minutes)

    meter = cols.get(Role.ENERGY_KWH.value)
    if meter is not None and _valued(meter).any():
        out[F["energy_kwh"]] = _increases(signals[Role.ENERGY_KWH.value], start_ns, n_minutes,
                                          config, wrap=False)
    return out.astype(np.float32)


def _dominant_code(tl: "_Timeline", c: SignalColumns, n_minutes: int) -> np.ndarray:
    """Per minute, the reason code held for the most seconds (ties: the smaller code); 0 where
    no code was held. Codes are held like states: until the next code, a BAD sample or silence."""
    vals = c.values.astype(np.float64)
    m, sec, code = tl.held(Role.REASON_CODE.value, vals, np.isfinite(vals) & (vals > 0))
    out = np.zeros(n_minutes)
    if m.size == 0:
        return out
    codes, idx = np.unique(code, return_inverse=True)
    held = np.bincount(m * codes.size + idx, weights=sec,
                       minlength=n_minutes * codes.size).reshape(n_minutes, codes.size)
    best = held.argmax(axis=1)   # first maximum: codes are sorted, so ties go to the smaller
    return np.where(held.max(axis=1) > 0, codes[best], 0.0)


def _state_codes(values: np.ndarray) -> np.ndarray:
    """Each state value's index in STATES, -1 for anything else (a raw code, not text)."""
    try:
        # A C-level pass: a non-str value never equals a state name's key.
        return np.fromiter(map(_STATE_CODE.get, values, repeat(-1)), dtype=np.int64,
                           count=len(values))
    except TypeError:       # an unhashable value
        return np.array([_STATE_CODE.get(v, -1) if isinstance(v, str) else -1 for v in values],
                        dtype=np.int64)


def _in_time_order(c: SignalColumns) -> SignalColumns:
    """The columns sorted by source time (BAD first at equal times, as in rollup_minutes).

    Arrival order is not source order (a buffering device, a jittery clock): a counter read
    out of order would look like a decrease."""
    if c.ts_ns.size < 2 or (np.diff(c.ts_ns) > 0).all():
        return c
    order = np.lexsort((c.quality != _BAD, c.ts_ns))
    return SignalColumns(c.ts_ns[order], c.values[order], c.quality[order])


def _before(c: SignalColumns, end_ns: int) -> SignalColumns:
    keep = c.ts_ns < end_ns
    if keep.all():
        return c
    return SignalColumns(c.ts_ns[keep], c.values[keep], c.quality[keep])


def _valued(c: SignalColumns) -> np.ndarray:
    ok = c.quality != _BAD
    if c.values.dtype != object:
        ok &= np.isfinite(c.values)
    return ok


def _increases(c: SignalColumns, start_ns: int, n_minutes: int, config: RollupConfig,
               *, wrap: bool) -> np.ndarray:
    """Per-minute increase of a cumulative value (module docstring: counters, worked cases)."""
    ok = _valued(c)
    ok[ok] = c.values[ok].astype(np.float64) >= 0
    ts, v = c.ts_ns[ok], c.values[ok].astype(np.float64)
    if v.size < 2:
        return np.zeros(n_minutes)
    prev, new = v[:-1], v[1:]
    dec = new < prev
    unwrap = np.zeros(prev.size)
    if wrap:
        window = config.wrap_window
        for width in config.counter_widths:
            top_prev = (prev < width) & (prev >= width - window)
            top_new = (new < width) & (new >= width - window)
            unwrap[dec & (unwrap == 0) & top_prev & (new < window)] = width
            unwrap[~dec & (unwrap == 0) & (prev < window) & top_new] = -width
    dec &= unwrap == 0
    reset = dec & ((new <= config.reset_fraction * prev) | (prev - new > config.max_noise_drop))
    level = v + np.concatenate(([0.0], np.cumsum(unwrap)))
    # High-water mark per run between resets: noise never lowers the base counting resumes from.
    bounds = np.concatenate(([0], np.flatnonzero(reset) + 1, [v.size]))
    for a, b in zip(bounds[:-1], bounds[1:]):
        level[a:b] = np.maximum.accumulate(level[a:b])
    inc = np.diff(level)
    inc[reset] = 0.0
    step = inc > 0
    t_b = ts[1:][step]
    t_a = np.maximum(ts[:-1][step], t_b - config.stale_ns)
    return _spread(t_a, t_b, inc[step], start_ns, n_minutes)


def _spread(a: np.ndarray, b: np.ndarray, amount: np.ndarray, start_ns: int, n_minutes: int
            ) -> np.ndarray:
    """Per minute of the range, the share of each amount that falls in it, each spread evenly
    over its interval [a, b); an interval of zero length puts its amount in the minute of b."""
    m_a = (a - start_ns) // NS_PER_MIN
    m_b = np.maximum(b - 1 - start_ns, a - start_ns) // NS_PER_MIN
    # Most intervals (a counter read every few seconds) lie inside one minute: no cutting.
    whole = m_a == m_b
    m, weight = m_a[whole], amount[whole]
    cut = ~whole
    if cut.any():
        a, b, amount = a[cut], b[cut], amount[cut]
        idx, m_cut, ns = split_minutes(a, b, start_ns)
        m = np.concatenate((m, m_cut))
        weight = np.concatenate((weight, amount[idx] * ns / (b - a)[idx]))
    here = (m >= 0) & (m < n_minutes)
    return np.bincount(m[here], weights=weight[here], minlength=n_minutes)


def split_minutes(a: np.ndarray, b: np.ndarray, start_ns: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut intervals [a, b) (b > a, ns) at minute boundaries counted from start_ns:
    (interval index, minute index, nanoseconds) per piece."""
    ra, rb = a - start_ns, b - start_ns
    m0, m1 = ra // NS_PER_MIN, (rb - 1) // NS_PER_MIN
    count = m1 - m0 + 1
    seg = np.repeat(np.arange(a.size), count)
    first = np.cumsum(count) - count
    m = m0[seg] + (np.arange(seg.size) - first[seg])
    lo = np.maximum(ra[seg], m * NS_PER_MIN)
    hi = np.minimum(rb[seg], (m + 1) * NS_PER_MIN)
    return seg, m, hi - lo


class _Timeline:
    """All samples of the device merged in time order, cut into covered segments.

    Segment k runs from sample k to the next sample of the device, but no longer than
    stale_after_s: the device is alive inside segments and unknown between them.
    """

    def __init__(self, cols: Mapping[str, SignalColumns], start_ns: int, end_ns: int,
                 stale_after_s: float) -> None:
        names = list(cols)
        ts = np.concatenate([cols[n].ts_ns for n in names])
        bad = np.concatenate([cols[n].quality == _BAD for n in names])
        sig = np.concatenate([np.full(cols[n].ts_ns.size, i) for i, n in enumerate(names)])
        pos = np.concatenate([np.arange(cols[n].ts_ns.size) for n in names])
        order = np.lexsort((~bad, ts))           # by time; BAD first at equal times
        self.names = names
        self.start_ns, self.end_ns = start_ns, end_ns
        self.ts, self.bad, self.sig, self.pos = ts[order], bad[order], sig[order], pos[order]
        stale_ns = int(stale_after_s * NS_PER_S)
        nxt = np.append(self.ts[1:], np.iinfo(np.int64).max)
        self.seg_a = np.maximum(self.ts, start_ns)
        self.seg_b = np.minimum(np.minimum(nxt, self.ts + stale_ns), end_ns)
        idx = np.arange(self.ts.size)
        self.last_bad = np.maximum.accumulate(np.where(self.bad, idx, -1))

    def held(self, name: str, values: np.ndarray, valid: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pieces of held value of signal `name`: (minute index, seconds, value) per piece.

        `values`/`valid` are indexed like that signal's columns; an invalid sample ends the
        previous hold without starting one.
        """
        i = self.names.index(name)
        idx = np.arange(self.ts.size)
        mine = (self.sig == i) & ~self.bad
        last = np.maximum.accumulate(np.where(mine, idx, -1))
        src = self.pos[np.maximum(last, 0)]
        ok = (last >= 0) & (last > self.last_bad) & valid[src] & (self.seg_b > self.seg_a)
        return self._split(self.seg_a[ok], self.seg_b[ok], values[src[ok]])

    def _split(self, a: np.ndarray, b: np.ndarray, v: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cut segments [a, b) at minute boundaries: (minute, seconds, value) per piece."""
        seg, m, ns = split_minutes(a, b, self.start_ns)
        return m, ns / NS_PER_S, v[seg]
