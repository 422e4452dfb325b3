"""Time-of-use tariffs: which price period each minute of the window falls in.

Loaded from YAML (see `verifier/tariffs/guangdong.yaml`, the default, for the format and for
what its prices do and do not claim). Periods are local hours; China keeps no daylight
saving, so a fixed UTC offset is exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any, Mapping

import numpy as np
import yaml

from edge.errors import VerificationInputError
from edge.rollup_layout import MINUTES_PER_DAY

from .yamlfile import read_yaml, refuse_unknown_keys
from .localtime import UTC, slot_minutes
from .shifts import parse_hhmm, parse_utc_offset

CRITICAL = "critical_peak"
# Prices are held as integers of this unit so that cost is exact integer arithmetic
# (verifier.energy); a tariff needing a finer price than 0.000001 yuan/kWh is refused.
PRICE_UNITS_PER_YUAN = 1_000_000


def price_units(value: object, where: str, period: str) -> int:
    """A price per kWh in yuan (YAML number or text) -> integer micro-yuan per kWh."""
    if isinstance(value, bool) or value is None:
        raise VerificationInputError(
            f"{where}: price of {period!r} must be a non-negative number, got {value!r}")
    try:
        # str() of a float is its shortest repr: 0.247 stays 0.247, not 0.24699999...
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise VerificationInputError(
            f"{where}: price of {period!r} is not a number: {value!r}") from None
    if not d.is_finite() or d < 0:
        raise VerificationInputError(
            f"{where}: price of {period!r} must be a non-negative number, got {value!r}")
    units = d * PRICE_UNITS_PER_YUAN
    if units != units.to_integral_value():
        raise VerificationInputError(
            f"{where}: price of {period!r} ({value!r}) has more than 6 decimals")
    return int(units)


TARIFF_KEYS = ("name", "currency", "utc_offset_h", "default_period", "prices_yuan_per_kwh",
               "periods", "critical_peak")


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

    @property
    def price_units(self) -> dict[str, int]:
        """Period -> price in micro-yuan per kWh (exact)."""
        return {p: price_units(v, self.name, p) for p, v in self.prices.items()}

    def period_index(self, days: np.ndarray, tz: str = UTC) -> np.ndarray:
        """(len(days), 1440) int8 index into `period_names` for each slot of a cube over the
        days of zone `tz` (verifier.localtime: UTC days by default)."""
        n = len(days)
        names = self.period_names
        offset = int(round(self.utc_offset_h * 60))
        slots, _ = slot_minutes(np.asarray(days).astype("datetime64[D]"), tz)
        local_abs = slots.reshape(-1) + offset
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
        if not isinstance(raw, Mapping):
            raise VerificationInputError(f"{where}: expected a mapping with prices_yuan_per_kwh")
        refuse_unknown_keys(raw, TARIFF_KEYS, where)
        if isinstance(raw.get("critical_peak"), Mapping):
            refuse_unknown_keys(raw["critical_peak"], ("months", "hours"), f"{where}: critical_peak")
        try:
            raw_prices = raw["prices_yuan_per_kwh"].items()
            default = str(raw.get("default_period", "flat"))
            ranges = lambda rs: tuple((parse_hhmm(a, where), parse_hhmm(b, where))  # noqa: E731
                                      for a, b in rs)
            periods = {str(p): ranges(rs) for p, rs in (raw.get("periods") or {}).items()}
            crit = raw.get("critical_peak") or {}
            months = tuple(int(m) for m in crit.get("months", ()))
            crit_ranges = ranges(crit.get("hours", ()))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise VerificationInputError(f"{where}: malformed tariff ({e!r})") from None
        # Validated (and made exact) here, so a bad price is an input error at load time.
        prices = {str(k): price_units(v, where, str(k)) / PRICE_UNITS_PER_YUAN
                  for k, v in raw_prices}
        unpriced = [p for p in [default, *periods] + ([CRITICAL] if crit_ranges else [])
                    if p not in prices]
        if unpriced:
            raise VerificationInputError(f"{where}: no price for periods {unpriced}")
        if any(not 1 <= m <= 12 for m in months):
            raise VerificationInputError(f"{where}: critical_peak months must be 1–12")
        return cls(str(raw.get("name", where)), str(raw.get("currency", "CNY")),
                   parse_utc_offset(raw.get("utc_offset_h", 8.0), where), prices, periods,
                   default, months,
                   crit_ranges)

    @classmethod
    def load(cls, path: str) -> "Tariff":
        return cls.from_mapping(read_yaml(path, "tariff"), path)


def guangdong_default() -> Tariff:
    text = resources.files("verifier").joinpath("tariffs", "guangdong.yaml").read_text("utf-8")
    return Tariff.from_mapping(yaml.safe_load(text), "tariffs/guangdong.yaml")
