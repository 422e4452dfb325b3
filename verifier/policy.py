"""Voucher policy as data: catalogs per programme year, and the device-count rule.

The rules live in `verifier/catalogs/<programme>.yaml` (built from POLICY.md and the seeds);
this module only knows the two subsidy formulas they name:

- `contract_ratio` (2020): voucher = min(contract amount × regional ratio, item cap)
- `min_contract` (2018–19): voucher = min(item cap, contract's cloud-platform fee)

Money is integer fen throughout, so ⌈amount ÷ per-device subsidy⌉ has no float rounding.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping

import yaml

from edge.errors import VerificationInputError

from .localtime import check_zone
from .yamlfile import read_yaml

PASS, FAIL = "PASS", "FAIL"
PROGRAMME_ALIASES = {"2020": "2020", "2018": "2018", "2019": "2018", "2018-19": "2018",
                     "2018-2019": "2018", "2018–19": "2018"}
REGIONS = ("prd", "ewn", "cluster")
# No voucher, contract or subsidy of these programmes comes near 10 billion yuan (the enterprise
# cap is 300,000); anything above is a typo or an attack on the arithmetic (1e300), not a claim.
MAX_YUAN = 10_000_000_000


# ---------------------------------------------------------------- money


def to_fen(value: object, what: str = "amount") -> int:
    """Yuan (int, str or Decimal; at most 2 decimals) -> integer fen."""
    if isinstance(value, bool) or value is None:
        raise VerificationInputError(f"{what} must be a number of yuan, got {value!r}")
    try:
        # str() of a float keeps its shortest repr, so 1500.1 stays 1500.1 and not 1500.0999...
        d = Decimal(str(value).replace(",", "").strip())
    except InvalidOperation:
        raise VerificationInputError(f"{what} {value!r} is not a number of yuan") from None
    if not d.is_finite() or d < 0:
        raise VerificationInputError(f"{what} must be a non-negative amount, got {value!r}")
    # Compared before scaling: Decimal would raise Overflow on 1e999999 × 100.
    if d > MAX_YUAN:
        raise VerificationInputError(
            f"{what} {value!r} is not a plausible amount (at most {MAX_YUAN:,} yuan)")
    fen = d * 100
    if fen != fen.to_integral_value():
        raise VerificationInputError(f"{what} {value!r} has more than 2 decimals (fen)")
    return int(fen)


def yuan(fen: int) -> str:
    """123456 -> '1,234.56' (exact; no float)."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100:,}.{fen % 100:02d}"


def yuan_plain(fen: int) -> str:
    """123456 -> '1234.56': exact decimal text for JSON (no float, no separators)."""
    return yuan(fen).replace(",", "")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------- catalogs


@dataclass(frozen=True)
class CatalogItem:
    no: int
    name: str
    section: str = ""
    cap_fen: int | None = None          # None: bounded by its per-device formula only
    per_device_fen: int | None = None
    aliases: tuple[str, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"no": self.no, "name": self.name, "section": self.section,
                "cap": None if self.cap_fen is None else self.cap_fen / 100,
                "per_device": None if self.per_device_fen is None else self.per_device_fen / 100}


DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_MAX_BACKFILLED_SHARE = 0.10


@dataclass(frozen=True)
class Catalog:
    programme: str
    title: str
    source: str
    formula: str
    items: tuple[CatalogItem, ...]
    enterprise_cap_fen: int
    ratios_percent: Mapping[str, int] = field(default_factory=dict)
    bonus_fen: int = 0
    bonus_name: str = ""
    exclusion_groups: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # Review days are the programme's local days; and a device-day whose samples were mostly
    # captured long after their source time (a generated or imported history) is not live.
    timezone: str = DEFAULT_TIMEZONE
    max_backfilled_share: float = DEFAULT_MAX_BACKFILLED_SHARE

    def item(self, key: str | int) -> CatalogItem:
        """An item by number or by name (spaces, full-width brackets and case ignored)."""
        text = str(key).strip()
        if text.isdigit():
            for it in self.items:
                if it.no == int(text):
                    return it
        wanted = _norm(text)
        for it in self.items:
            if wanted in {_norm(n) for n in (it.name, *it.aliases)}:
                return it
        names = ", ".join(f"{it.no} {it.name}" for it in self.items)
        raise VerificationInputError(
            f"no item {text!r} in the {self.programme} catalog; items: {names}")

    def groups_of(self, no: int) -> list[tuple[str, tuple[int, ...]]]:
        return [g for g in self.exclusion_groups if no in g[1]]


def _share(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise VerificationInputError(f"{where}: {value!r} is not a share between 0 and 1")
    return float(value)


def _norm(name: str) -> str:
    return re.sub(r"[\s（）()、,，]", "", name).lower()


@lru_cache(maxsize=None)
def load_catalog(programme: str) -> Catalog:
    key = PROGRAMME_ALIASES.get(str(programme).strip())
    if key is None:
        raise VerificationInputError(
            f"unknown programme {programme!r}; known: 2020, 2018 (2018–19)")
    text = resources.files("verifier").joinpath("catalogs", f"{key}.yaml").read_text("utf-8")
    return catalog_from_mapping(yaml.safe_load(text), f"catalogs/{key}.yaml")


def catalog_from_mapping(raw: Mapping[str, Any], where: str = "catalog") -> Catalog:
    try:
        items = tuple(
            CatalogItem(no=int(i["number"]), name=str(i["name"]), section=str(i.get("section", "")),
                        cap_fen=None if i.get("cap") is None else to_fen(i["cap"], "cap"),
                        per_device_fen=None if i.get("per_device") is None
                        else to_fen(i["per_device"], "per_device"),
                        aliases=tuple(str(a) for a in i.get("aliases", ())),
                        note=str(i.get("note", "")))
            for i in raw["items"])
        bonus = raw.get("enterprise_bonus") or {}
        cat = Catalog(
            programme=str(raw["programme"]), title=str(raw.get("title", "")),
            source=str(raw.get("source", "")), formula=str(raw["formula"]), items=items,
            enterprise_cap_fen=to_fen(raw["enterprise_cap"], "enterprise_cap"),
            ratios_percent={str(k): int(v) for k, v in (raw.get("ratios_percent") or {}).items()},
            bonus_fen=to_fen(bonus.get("amount", 0), "enterprise_bonus"),
            bonus_name=str(bonus.get("name", "")),
            exclusion_groups=tuple((str(g["name"]), tuple(int(n) for n in g["items"]))
                                   for g in raw.get("exclusion_groups") or ()),
            timezone=check_zone(raw.get("timezone", DEFAULT_TIMEZONE), f"{where}: timezone"),
            max_backfilled_share=_share(raw.get("max_backfilled_share",
                                                DEFAULT_MAX_BACKFILLED_SHARE),
                                        f"{where}: max_backfilled_share"))
    except (KeyError, TypeError, ValueError) as e:
        raise VerificationInputError(f"{where}: malformed catalog ({e!r})") from None
    if cat.formula not in ("contract_ratio", "min_contract"):
        raise VerificationInputError(f"{where}: unknown formula {cat.formula!r}")
    for it in items:
        if it.cap_fen is None and it.per_device_fen is None:
            raise VerificationInputError(f"{where}: item {it.no} has neither cap nor per_device")
    return cat


# ---------------------------------------------------------------- vouchers


@dataclass(frozen=True)
class Voucher:
    """What the enterprise claims. Give `amount`, or `contract_amount` (+ `region` for 2020)."""

    item: str
    programme: str = "2020"
    amount: object = None
    contract_amount: object = None
    region: str | None = None
    prior_items: tuple[str, ...] = ()     # items the enterprise already received in the period
    prior_subsidy: object = 0             # subsidy already received in the period (yuan)
    lianghua_bonus: bool = False          # 2018–19: 两化融合 certified, no earlier subsidy

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str = "voucher") -> "Voucher":
        known = {"item", "programme", "amount", "contract_amount", "region", "prior_items",
                 "prior_subsidy", "lianghua_bonus"}
        unknown = set(raw) - known
        if unknown:
            raise VerificationInputError(
                f"{where}: unknown keys {sorted(unknown)}; valid: {sorted(known)}")
        if "item" not in raw:
            raise VerificationInputError(f"{where}: 'item' is required (e.g. 设备物联 or 5)")
        prior = raw.get("prior_items") or []
        if not isinstance(prior, list):
            raise VerificationInputError(f"{where}: prior_items must be a list, e.g. [5, 7]")
        region = raw.get("region")
        if region is not None and not isinstance(region, str):
            raise VerificationInputError(f"{where}: region must be one of {', '.join(REGIONS)}")
        bonus = raw.get("lianghua_bonus", False)
        if not isinstance(bonus, bool):
            # bool("no") is True: a quoted answer must not grant the bonus by accident.
            raise VerificationInputError(
                f"{where}: lianghua_bonus must be true or false, got {bonus!r}")
        return cls(item=str(raw["item"]), programme=str(raw.get("programme", "2020")),
                   amount=raw.get("amount"), contract_amount=raw.get("contract_amount"),
                   region=region, prior_items=tuple(str(x) for x in prior),
                   prior_subsidy=raw.get("prior_subsidy") or 0, lianghua_bonus=bonus)


def load_voucher(path: str) -> Voucher:
    raw = read_yaml(path, "voucher file")
    if not isinstance(raw, dict):
        raise VerificationInputError(f"{path}: expected a mapping with item, amount, ...")
    return Voucher.from_mapping(raw, path)


@dataclass(frozen=True)
class Problem:
    code: str
    message: str


@dataclass(frozen=True)
class Terms:
    """A voucher resolved against its catalog: the amount, the device rule and any problems
    that fail it whatever the devices."""

    catalog: Catalog
    item: CatalogItem
    amount_fen: int
    required_devices: int | None
    arithmetic: tuple[str, ...]
    problems: tuple[Problem, ...]
    headroom_fen: int        # what the enterprise cap still allows


def resolve(voucher: Voucher, catalog: Catalog | None = None) -> Terms:
    cat = catalog or load_catalog(voucher.programme)
    item = cat.item(voucher.item)
    lines: list[str] = []
    problems: list[Problem] = []

    contract_share = _contract_share(voucher, cat, item, lines)
    if voucher.amount is not None:
        amount = to_fen(voucher.amount, "voucher amount")
        lines.append(f"voucher amount (given) = {yuan(amount)}")
        if contract_share is not None and amount > contract_share:
            problems.append(Problem("amount_above_contract_share",
                                    f"voucher amount {yuan(amount)} exceeds what the contract "
                                    f"allows ({yuan(contract_share)})"))
        if item.cap_fen is not None and amount > item.cap_fen:
            problems.append(Problem("amount_above_item_cap",
                                    f"voucher amount {yuan(amount)} exceeds item {item.no} "
                                    f"{item.name}'s cap {yuan(item.cap_fen)}"))
    elif contract_share is not None:
        amount = contract_share
    else:
        raise VerificationInputError(
            "give the voucher amount, or the contract amount"
            + (" and the region (prd, ewn or cluster)" if cat.formula == "contract_ratio" else ""))
    if amount == 0:
        raise VerificationInputError("the voucher amount is zero")

    headroom = cat.enterprise_cap_fen + (cat.bonus_fen if voucher.lianghua_bonus else 0) \
        - to_fen(voucher.prior_subsidy, "prior subsidy")
    cap_text = f"enterprise cap {yuan(cat.enterprise_cap_fen)}"
    if voucher.lianghua_bonus and cat.bonus_fen:
        cap_text += f" + {cat.bonus_name} bonus {yuan(cat.bonus_fen)}"
    lines.append(f"enterprise headroom = {cap_text} − prior subsidy "
                 f"{yuan(to_fen(voucher.prior_subsidy))} = {yuan(headroom)}")
    if amount > headroom:
        problems.append(Problem("enterprise_cap_exceeded",
                                f"voucher amount {yuan(amount)} exceeds the enterprise's "
                                f"remaining cap {yuan(max(headroom, 0))}"))
    problems.extend(_exclusions(voucher, cat, item))

    required = None
    if item.per_device_fen is not None:
        required = ceil_div(amount, item.per_device_fen)
        lines.append(f"required devices = ⌈{yuan(amount)} ÷ {yuan(item.per_device_fen)}⌉ "
                     f"= {required}")
    else:
        lines.append(f"item {item.no} {item.name} has no per-device subsidy: "
                     "no device count is required")
    return Terms(cat, item, amount, required, tuple(lines), tuple(problems), headroom)


def _contract_share(voucher: Voucher, cat: Catalog, item: CatalogItem,
                    lines: list[str]) -> int | None:
    """What the contract supports under the catalog's formula, or None without a contract."""
    if voucher.contract_amount is None:
        return None
    contract = to_fen(voucher.contract_amount, "contract amount")
    if cat.formula == "contract_ratio":
        region = (voucher.region or "").strip().lower()
        if region not in cat.ratios_percent:
            raise VerificationInputError(
                f"region {voucher.region!r} unknown; valid: {', '.join(cat.ratios_percent)} "
                "(prd = Pearl River Delta 70%, ewn = east/west/north 80%, cluster = pilot 80%)")
        pct = cat.ratios_percent[region]
        share = contract * pct // 100   # subsidies are not rounded up to the fen
        text = f"{yuan(contract)} × {pct}% ({region}) = {yuan(share)}"
    else:
        share, text = contract, f"contract fee {yuan(contract)}"
    if item.cap_fen is not None and share > item.cap_fen:
        lines.append(f"contract share = min({text}, item cap {yuan(item.cap_fen)}) "
                     f"= {yuan(item.cap_fen)}")
        return item.cap_fen
    lines.append(f"contract share = {text}")
    return share


def _exclusions(voucher: Voucher, cat: Catalog, item: CatalogItem) -> list[Problem]:
    problems = []
    for raw in voucher.prior_items:
        prior = cat.item(raw)
        if prior.no == item.no:
            problems.append(Problem("excluded_by_prior",
                                    f"item {item.no} {item.name} was already claimed "
                                    "(the same second-level item cannot be claimed twice)"))
            continue
        for name, members in cat.groups_of(item.no):
            if prior.no in members:
                problems.append(Problem("excluded_by_prior",
                                        f"item {item.no} {item.name} excluded: {prior.no} "
                                        f"{prior.name} of the {name} group was already claimed"))
    return problems


@dataclass(frozen=True)
class Verdict:
    verdict: str
    counted_devices: int
    required_devices: int | None
    reasons: tuple[Problem, ...]
    arithmetic: tuple[str, ...]
    supported_amount_fen: int | None   # when short: the largest amount the devices support

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "counted_devices": self.counted_devices,
                "required_devices": self.required_devices,
                "reasons": [{"code": p.code, "message": p.message} for p in self.reasons],
                "arithmetic": list(self.arithmetic),
                "supported_amount": None if self.supported_amount_fen is None
                else yuan_plain(self.supported_amount_fen)}


def decide(terms: Terms, counted_devices: int) -> Verdict:
    if counted_devices < 0:
        raise ValueError("counted_devices cannot be negative")
    reasons = list(terms.problems)
    lines = list(terms.arithmetic)
    supported = None
    if terms.required_devices is not None:
        per = terms.item.per_device_fen
        assert per is not None
        lines.append(f"counted devices = {counted_devices} "
                     f"{'≥' if counted_devices >= terms.required_devices else '<'} "
                     f"{terms.required_devices} required")
        if counted_devices < terms.required_devices:
            limits = [counted_devices * per, max(terms.headroom_fen, 0)]
            if terms.item.cap_fen is not None:
                limits.append(terms.item.cap_fen)
            supported = min(limits)
            reasons.append(Problem(
                "too_few_devices",
                f"{counted_devices} counted devices, {terms.required_devices} required; they "
                f"support at most {yuan(supported)} ({counted_devices} × {yuan(per)})"))
            lines.append(f"largest supported amount = min({counted_devices} × {yuan(per)}"
                         + (f", item cap {yuan(terms.item.cap_fen)}" if terms.item.cap_fen
                            is not None else "")
                         + f", headroom {yuan(max(terms.headroom_fen, 0))}) = {yuan(supported)}")
    return Verdict(FAIL if reasons else PASS, counted_devices, terms.required_devices,
                   tuple(reasons), tuple(lines), supported)
