"""Energy per device, line and day, from minute rollups.

- consumption: the rollup's energy increase (meter when present, else integrated power; the
  rollup already handles meter resets, and negative increases are clipped, never subtracted);
- specific energy: kWh per good part;
- by state: energy in minutes whose dominant state is running, idle, standby (stopped or
  planned stop) or other (fault, setup, no state);
- 15-minute maximum demand: the highest mean power over a clock-aligned quarter hour, the
  interval Chinese utilities bill demand on;
- cost per time-of-use period (verifier.tariff), and the savings potential if idle energy
  were avoided (idle minutes' energy at the prices of the periods it was drawn in).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from edge.rollup_layout import MINUTES_PER_DAY

from .localtime import slot_ns
from .cube import DeviceInfo, RollupCube
from .oee import quantities
from .states import STATE_INDEX, dominant_state, state_seconds
from .tariff import PRICE_UNITS_PER_YUAN, Tariff, guangdong_default

QUARTERS_PER_DAY = MINUTES_PER_DAY // 15
STATE_GROUPS = {
    "running": (STATE_INDEX["running"],),
    "idle": (STATE_INDEX["idle"],),
    "standby": (STATE_INDEX["stopped"], STATE_INDEX["planned_stop"]),
}
# Each minute's energy is quantized to integer microwatt-hours before anything is summed, so
# every figure is an integer sum: identical whatever the summation order, chunking or numpy
# version. 1 µWh is below what the rollup's float32 minute can resolve, so quantizing loses
# nothing: coarser units bias steady loads (1 Wh per minute would turn a steady 25 W into 0 kWh
# and 35 W into 60 W; 1 mWh still shifts 2 kW by 1e-5).
UNITS_PER_KWH = 1_000_000_000
# A minute above this (60 MW) is a broken reading, not energy: it counts 0 like a NaN and is
# reported in `broken_minutes`. The bound also keeps int64 sums from overflowing (one device's
# 17 years of such minutes stay below 2**63).
MAX_KWH_PER_MINUTE = 1_000.0
# Energy units (µWh) × price units (micro-yuan per kWh) = 1e-15 yuan; a fen is 1e-2 yuan.
_EXACT_PER_FEN = UNITS_PER_KWH * PRICE_UNITS_PER_YUAN // 100


def quantize_kwh(kwh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minute kWh (float) -> (int64 energy units, broken-minute mask). Negative minutes count 0
    (the rollup's resets, never subtracted); non-finite or implausible ones count 0 and are
    marked broken."""
    x = np.array(kwh, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        broken = ~np.isfinite(x) | (x > MAX_KWH_PER_MINUTE)
    x[broken] = 0.0
    np.maximum(x, 0.0, out=x)
    x *= UNITS_PER_KWH
    return np.rint(x, out=x).astype(np.int64), broken


def fen_of(exact: int) -> int:
    """Exact cost (energy units × price units) -> integer fen, half up (costs are >= 0)."""
    return (exact + _EXACT_PER_FEN // 2) // _EXACT_PER_FEN


def _kwh(units: int | np.integer) -> float:
    return int(units) / UNITS_PER_KWH


@dataclass(frozen=True)
class EnergyConfig:
    tariff: Tariff = field(default_factory=guangdong_default)


@dataclass
class EnergyTotals:
    """Summable energy figures of a device, line or plant, all integers.

    Energy is in `UNITS_PER_KWH` units, money in fen. A device's cost is rounded to the fen
    once per price period; lines and the plant add those fen, so every total is exactly the
    sum of the figures it is made of. The float properties are views for reports.
    """

    units: int = 0
    good: float = 0.0
    units_by_state: dict[str, int] = field(default_factory=dict)
    units_by_period: dict[str, int] = field(default_factory=dict)
    fen_by_period: dict[str, int] = field(default_factory=dict)
    idle_fen: int = 0
    units_by_day: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    units_by_quarter: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    broken_minutes: int = 0          # minutes whose energy was not a plausible number
    day0: np.datetime64 | None = None
    n_days: int = 0
    tz: str = "UTC"                  # the zone whose local days `day0` and the quarters follow

    def add(self, o: "EnergyTotals") -> None:
        self.units += o.units
        self.good += o.good
        self.idle_fen += o.idle_fen
        self.broken_minutes += o.broken_minutes
        for mine, theirs in ((self.units_by_state, o.units_by_state),
                             (self.units_by_period, o.units_by_period),
                             (self.fen_by_period, o.fen_by_period)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        self.units_by_day = o.units_by_day.copy() if not self.units_by_day.size \
            else self.units_by_day + o.units_by_day
        self.units_by_quarter = o.units_by_quarter.copy() if not self.units_by_quarter.size \
            else self.units_by_quarter + o.units_by_quarter
        self.day0, self.n_days, self.tz = o.day0, o.n_days, o.tz

    @property
    def kwh(self) -> float:
        return _kwh(self.units)

    @property
    def kwh_by_state(self) -> dict[str, float]:
        return {k: _kwh(v) for k, v in self.units_by_state.items()}

    @property
    def kwh_by_period(self) -> dict[str, float]:
        return {k: _kwh(v) for k, v in self.units_by_period.items()}

    @property
    def kwh_by_day(self) -> np.ndarray:
        return self.units_by_day / UNITS_PER_KWH

    @property
    def demand_kw(self) -> np.ndarray:
        """Mean power per clock-aligned quarter hour."""
        return self.units_by_quarter * 4 / UNITS_PER_KWH

    @property
    def cost_fen(self) -> int:
        return sum(self.fen_by_period.values())

    @property
    def cost(self) -> float:
        return self.cost_fen / 100

    @property
    def cost_by_period(self) -> dict[str, float]:
        return {k: v / 100 for k, v in self.fen_by_period.items()}

    @property
    def idle_cost(self) -> float:
        return self.idle_fen / 100

    @property
    def kwh_per_good_part(self) -> float | None:
        return self.kwh / self.good if self.good > 0 else None

    def share(self, state: str) -> float | None:
        return self.units_by_state.get(state, 0) / self.units if self.units > 0 else None

    def max_demand(self) -> tuple[float, str | None]:
        q = self.units_by_quarter
        if not q.size or q.max() <= 0:
            return 0.0, None
        i = int(q.argmax())
        at = slot_ns(np.array([self.day0 + i // QUARTERS_PER_DAY]), self.tz,
                     (i % QUARTERS_PER_DAY) * 15)
        return float(self.demand_kw[i]), str(np.datetime64(at, "ns").astype("datetime64[m]")) + "Z"

    def to_dict(self, *, daily: bool = True) -> dict[str, Any]:
        r = lambda x, n=3: None if x is None else round(float(x), n)  # noqa: E731
        peak_kw, peak_at = self.max_demand()
        idle_units = self.units_by_state.get("idle", 0)
        # An extrapolation: whole units, no false precision.
        per_year = (lambda x: round(x * 365 / self.n_days)) if self.n_days else (lambda x: 0)
        out: dict[str, Any] = {
            "kwh": r(self.kwh), "good_count": r(self.good, 1),
            "kwh_per_good_part": r(self.kwh_per_good_part, 5),
            "kwh_by_state": {k: r(v) for k, v in self.kwh_by_state.items()},
            "idle_share": r(self.share("idle"), 4), "standby_share": r(self.share("standby"), 4),
            "max_demand_15min_kw": r(peak_kw), "max_demand_at": peak_at,
            "kwh_by_period": {k: r(v) for k, v in self.kwh_by_period.items()},
            "cost_by_period": {k: v / 100 for k, v in self.fen_by_period.items()},
            "cost_by_period_fen": dict(self.fen_by_period),
            "cost": self.cost, "cost_fen": self.cost_fen,
            "broken_minutes": self.broken_minutes,
            "savings_potential": {
                "basis": "energy drawn while idle, at the prices of the periods it was drawn in",
                "kwh": r(_kwh(idle_units)), "cost": self.idle_cost, "cost_fen": self.idle_fen,
                "kwh_per_year": per_year(_kwh(idle_units)),
                "cost_per_year": per_year(self.idle_fen / 100)},
        }
        if daily:
            days = (self.day0 + np.arange(self.n_days)) if self.day0 is not None else []
            out["kwh_by_day"] = {str(d): r(v) for d, v in zip(days, self.kwh_by_day)}
        return out


@dataclass
class DeviceEnergy:
    device: DeviceInfo
    totals: EnergyTotals


def _sum_by_period(units: np.ndarray, periods: np.ndarray, n_periods: int) -> np.ndarray:
    """(D, K, M) int64 units and (K, M) period index -> (D, P) int64 sums (exact)."""
    flat = units.reshape(units.shape[0], -1)
    idx = periods.reshape(-1)
    return np.stack([flat[:, idx == p].sum(axis=1) for p in range(n_periods)], axis=1) \
        if flat.shape[0] else np.zeros((0, n_periods), dtype=np.int64)


def analyse_energy(cube: RollupCube, config: EnergyConfig | None = None, *,
                   periods: np.ndarray | None = None,
                   dominant: np.ndarray | None = None) -> list[DeviceEnergy]:
    """Per-device energy. `periods` (days, 1440) and `dominant` may be passed precomputed."""
    tariff = (config or EnergyConfig()).tariff
    if periods is None:
        periods = tariff.period_index(cube.days, cube.tz)
    if dominant is None:
        dominant = dominant_state(state_seconds(cube))
    n_dev, n_days = cube.present.shape
    units, broken = quantize_kwh(cube.field("energy_kwh"))                # (D, K, M) int64
    names = tariff.period_names
    prices = tariff.price_units
    zero = np.zeros((), dtype=np.int64)

    by_period = _sum_by_period(units, periods, len(names))                 # (D, P)
    by_state = {}
    for group, ids in STATE_GROUPS.items():
        mask = dominant == ids[0] if len(ids) == 1 else np.isin(dominant, ids)
        by_state[group] = np.where(mask, units, zero).sum(axis=(1, 2))
    idle = dominant == STATE_INDEX["idle"]
    idle_by_period = _sum_by_period(np.where(idle, units, zero), periods, len(names))
    units_day = units.sum(axis=2)                                           # (D, K)
    total = units_day.sum(axis=1)
    by_state["other"] = total - sum(by_state.values())
    _, good, _ = quantities(cube)
    good_sum = good.sum(axis=(1, 2), dtype=np.float64)
    quarters = units.reshape(n_dev, n_days * QUARTERS_PER_DAY, 15).sum(axis=2)
    n_broken = broken.sum(axis=(1, 2))

    out = []
    for d, info in enumerate(cube.devices):
        t = EnergyTotals(
            units=int(total[d]), good=float(good_sum[d]),
            units_by_state={k: int(v[d]) for k, v in by_state.items()},
            units_by_period={p: int(by_period[d, i]) for i, p in enumerate(names)},
            fen_by_period={p: fen_of(int(by_period[d, i]) * prices[p])
                           for i, p in enumerate(names)},
            # Idle energy at the prices it was drawn at, in exact units, rounded once.
            idle_fen=fen_of(sum(int(idle_by_period[d, i]) * prices[p]
                                for i, p in enumerate(names))),
            units_by_day=units_day[d], units_by_quarter=quarters[d],
            broken_minutes=int(n_broken[d]), day0=cube.days[0], tz=cube.tz,
            n_days=n_days)
        out.append(DeviceEnergy(info, t))
    return out


def aggregate_energy(results: Iterable[DeviceEnergy], key=lambda r: "plant"
                     ) -> dict[str, EnergyTotals]:
    groups: dict[str, EnergyTotals] = {}
    for r in results:
        groups.setdefault(key(r), EnergyTotals()).add(r.totals)
    return groups


__all__ = ["EnergyConfig", "EnergyTotals", "DeviceEnergy", "UNITS_PER_KWH", "analyse_energy",
           "aggregate_energy", "fen_of", "quantize_kwh"]
