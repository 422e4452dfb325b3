"""Time-of-use tariffs: which price period each UTC minute of the window falls in.

Loaded from YAML (see `verifier/tariffs/guangdong.yaml`, the default, for the format and for
what its prices do and do not claim). Periods are local hours; China keeps no daylight
saving, so a fixed UTC offset is exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Mapping

import numpy as np
import yaml

from edge.errors import VerificationInputError
from edge.rollup_layout import MINUTES_PER_DAY

from .yamlfile import read_yaml
from .shifts import parse_hhmm

CRITICAL = "critical_peak"


@dataclass(frozen=True)
class Tariff:
    name: str
    currency: str
    utc_offset_h: float
    prices: Mapping[str, float]                          # period -> price per kWh
    periods: Mapping[str, tuple[tuple[int, int], ...]]   # period -> local minute ranges
    default_period: str
    critical_months: tuple[int, ...] = ()
    critical_ranges: tuple[tuple[int, int], ...] = ()

    @property
    def period_names(self) -> list[str]:
        return list(self.prices)

    def period_index(self, days: np.ndarray) -> np.ndarray:
        """(len(days), 1440) int8 index into `period_names` for each UTC minute."""
        n = len(days)
        names = self.period_names
        offset = int(round(self.utc_offset_h * 60))
        day0 = days[0].astype("datetime64[D]").astype(np.int64) if n else 0
        local_abs = np.arange(n * MINUTES_PER_DAY, dtype=np.int64) + day0 * MINUTES_PER_DAY + offset
        minute = local_abs % MINUTES_PER_DAY
        idx = np.full(n * MINUTES_PER_DAY, names.index(self.default_period), dtype=np.int8)
        for period, ranges in self.periods.items():
            for a, b in ranges:
                idx[(minute >= a) & (minute < b)] = names.index(period)
        if self.critical_ranges and self.critical_months:
            month = (local_abs // MINUTES_PER_DAY).astype("datetime64[D]") \
                .astype("datetime64[M]").astype(np.int64) % 12 + 1
            in_months = np.isin(month, self.critical_months)
            for a, b in self.critical_ranges:
                idx[in_months & (minute >= a) & (minute < b)] = names.index(CRITICAL)
        return idx.reshape(n, MINUTES_PER_DAY)

    def to_dict(self) -> dict[str, Any]:
        hm = lambda m: f"{m // 60:02d}:{m % 60:02d}"  # noqa: E731
        return {"name": self.name, "currency": self.currency, "utc_offset_h": self.utc_offset_h,
                "prices_per_kwh": dict(self.prices), "default_period": self.default_period,
                "periods": {p: [[hm(a), hm(b)] for a, b in r] for p, r in self.periods.items()},
                "critical_peak": {"months": list(self.critical_months),
                                  "hours": [[hm(a), hm(b)] for a, b in self.critical_ranges]}}

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str = "tariff") -> "Tariff":
        try:
            prices = {str(k): float(v) for k, v in raw["prices_yuan_per_kwh"].items()}
            default = str(raw.get("default_period", "flat"))
            ranges = lambda rs: tuple((parse_hhmm(a, where), parse_hhmm(b, where))  # noqa: E731
                                      for a, b in rs)
            periods = {str(p): ranges(rs) for p, rs in (raw.get("periods") or {}).items()}
            crit = raw.get("critical_peak") or {}
            months = tuple(int(m) for m in crit.get("months", ()))
            crit_ranges = ranges(crit.get("hours", ()))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise VerificationInputError(f"{where}: malformed tariff ({e!r})") from None
        unpriced = [p for p in [default, *periods] + ([CRITICAL] if crit_ranges else [])
                    if p not in prices]
        if unpriced:
            raise VerificationInputError(f"{where}: no price for periods {unpriced}")
        if any(not 1 <= m <= 12 for m in months):
            raise VerificationInputError(f"{where}: critical_peak months must be 1–12")
        return cls(str(raw.get("name", where)), str(raw.get("currency", "CNY")),
                   float(raw.get("utc_offset_h", 8.0)), prices, periods, default, months,
                   crit_ranges)

    @classmethod
    def load(cls, path: str) -> "Tariff":
        return cls.from_mapping(read_yaml(path, "tariff"), path)


def guangdong_default() -> Tariff:
    text = resources.files("verifier").joinpath("tariffs", "guangdong.yaml").read_text("utf-8")
    return Tariff.from_mapping(yaml.safe_load(text), "tariffs/guangdong.yaml")
