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

from .cube import DeviceInfo, RollupCube
from .oee import quantities
from .states import STATE_INDEX, dominant_state, state_seconds
from .tariff import Tariff, guangdong_default

QUARTERS_PER_DAY = MINUTES_PER_DAY // 15
STATE_GROUPS = {
    "running": (STATE_INDEX["running"],),
    "idle": (STATE_INDEX["idle"],),
    "standby": (STATE_INDEX["stopped"], STATE_INDEX["planned_stop"]),
}


@dataclass(frozen=True)
class EnergyConfig:
    tariff: Tariff = field(default_factory=guangdong_default)


@dataclass
class EnergyTotals:
    """Summable energy figures of a device, line or plant."""

    kwh: float = 0.0
    good: float = 0.0
    kwh_by_state: dict[str, float] = field(default_factory=dict)
    kwh_by_period: dict[str, float] = field(default_factory=dict)
    cost_by_period: dict[str, float] = field(default_factory=dict)
    idle_cost: float = 0.0
    kwh_by_day: np.ndarray = field(default_factory=lambda: np.zeros(0))
    demand_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per quarter hour
    day0: np.datetime64 | None = None
    n_days: int = 0

    def add(self, o: "EnergyTotals") -> None:
        self.kwh += o.kwh
        self.good += o.good
        self.idle_cost += o.idle_cost
        for mine, theirs in ((self.kwh_by_state, o.kwh_by_state),
                             (self.kwh_by_period, o.kwh_by_period),
                             (self.cost_by_period, o.cost_by_period)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0.0) + v
        self.kwh_by_day = o.kwh_by_day.copy() if not self.kwh_by_day.size \
            else self.kwh_by_day + o.kwh_by_day
        self.demand_kw = o.demand_kw.copy() if not self.demand_kw.size \
            else self.demand_kw + o.demand_kw
        self.day0, self.n_days = o.day0, o.n_days

    @property
    def cost(self) -> float:
        return sum(self.cost_by_period.values())

    @property
    def kwh_per_good_part(self) -> float | None:
        return self.kwh / self.good if self.good > 0 else None

    def share(self, state: str) -> float | None:
        return self.kwh_by_state.get(state, 0.0) / self.kwh if self.kwh > 0 else None

    def max_demand(self) -> tuple[float, str | None]:
        if not self.demand_kw.size or self.demand_kw.max() <= 0:
            return 0.0, None
        i = int(self.demand_kw.argmax())
        at = self.day0.astype("datetime64[m]") + np.timedelta64(i * 15, "m")
        return float(self.demand_kw[i]), str(at) + "Z"

    def to_dict(self, *, daily: bool = True) -> dict[str, Any]:
        r = lambda x, n=3: None if x is None else round(float(x), n)  # noqa: E731
        peak_kw, peak_at = self.max_demand()
        annual = 365.0 / self.n_days if self.n_days else 0.0
        idle_kwh = self.kwh_by_state.get("idle", 0.0)
        out: dict[str, Any] = {
            "kwh": r(self.kwh), "good_count": r(self.good, 1),
            "kwh_per_good_part": r(self.kwh_per_good_part, 5),
            "kwh_by_state": {k: r(v) for k, v in self.kwh_by_state.items()},
            "idle_share": r(self.share("idle"), 4), "standby_share": r(self.share("standby"), 4),
            "max_demand_15min_kw": r(peak_kw), "max_demand_at": peak_at,
            "kwh_by_period": {k: r(v) for k, v in self.kwh_by_period.items()},
            "cost_by_period": {k: r(v, 2) for k, v in self.cost_by_period.items()},
            "cost": r(self.cost, 2),
            "savings_potential": {
                "basis": "energy drawn while idle, at the prices of the periods it was drawn in",
                "kwh": r(idle_kwh), "cost": r(self.idle_cost, 2),
                # an extrapolation: whole units, no false precision
                "kwh_per_year": round(idle_kwh * annual), "cost_per_year": round(self.idle_cost * annual)},
        }
        if daily:
            days = (self.day0 + np.arange(self.n_days)) if self.day0 is not None else []
            out["kwh_by_day"] = {str(d): r(v) for d, v in zip(days, self.kwh_by_day)}
        return out


@dataclass
class DeviceEnergy:
    device: DeviceInfo
    totals: EnergyTotals


def analyse_energy(cube: RollupCube, config: EnergyConfig | None = None, *,
                   periods: np.ndarray | None = None,
                   dominant: np.ndarray | None = None) -> list[DeviceEnergy]:
    """Per-device energy. `periods` (days, 1440) and `dominant` may be passed precomputed."""
    tariff = (config or EnergyConfig()).tariff
    if periods is None:
        periods = tariff.period_index(cube.days)
    if dominant is None:
        dominant = dominant_state(state_seconds(cube))
    n_dev, n_days = cube.present.shape
    energy = np.maximum(cube.field("energy_kwh"), 0)                      # (D, K, M)
    names = tariff.period_names
    prices = np.array([tariff.prices[p] for p in names])

    # One-hot of each minute's period: a single matrix product gives every period's energy.
    onehot = (periods.reshape(-1, 1) == np.arange(len(names))).astype(np.float32)
    flat = energy.reshape(n_dev, -1)
    by_period = (flat @ onehot).astype(np.float64)                         # (D, P)
    by_state = {}
    for group, ids in STATE_GROUPS.items():
        mask = dominant == ids[0] if len(ids) == 1 else np.isin(dominant, ids)
        by_state[group] = np.where(mask, energy, 0).sum(axis=-1).sum(axis=-1, dtype=np.float64)
    idle = dominant == STATE_INDEX["idle"]
    idle_cost = (np.where(idle, energy, 0).reshape(n_dev, -1) @ onehot).astype(np.float64) @ prices
    kwh_day = energy.sum(axis=2).astype(np.float64)
    kwh = kwh_day.sum(axis=1)
    by_state["other"] = kwh - sum(by_state.values())
    _, good, _ = quantities(cube)
    good_sum = good.sum(axis=(1, 2), dtype=np.float64)
    demand = energy.reshape(n_dev, n_days * QUARTERS_PER_DAY, 15).sum(axis=2, dtype=np.float64) * 4

    out = []
    for d, info in enumerate(cube.devices):
        t = EnergyTotals(
            kwh=float(kwh[d]), good=float(good_sum[d]),
            kwh_by_state={k: float(max(v[d], 0.0)) for k, v in by_state.items()},
            kwh_by_period={p: float(by_period[d, i]) for i, p in enumerate(names)},
            cost_by_period={p: float(by_period[d, i] * prices[i]) for i, p in enumerate(names)},
            idle_cost=float(idle_cost[d]),
            kwh_by_day=kwh_day[d], demand_kw=demand[d], day0=cube.days[0], n_days=n_days)
        out.append(DeviceEnergy(info, t))
    return out


def aggregate_energy(results: Iterable[DeviceEnergy], key=lambda r: "plant"
                     ) -> dict[str, EnergyTotals]:
    groups: dict[str, EnergyTotals] = {}
    for r in results:
        groups.setdefault(key(r), EnergyTotals()).add(r.totals)
    return groups


__all__ = ["EnergyConfig", "EnergyTotals", "DeviceEnergy", "analyse_energy",
           "aggregate_energy"]
