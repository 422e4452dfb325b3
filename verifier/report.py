"""Rendering a verification `Report`: text for the reviewer, JSON for machines.

The JSON layout is versioned (`"schema": "shangyun.verify/1"`) and documented in
verifier/README.md; adding keys keeps the version, renaming or removing one bumps it.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from .capture import capture_lines, capture_to_dict
from .oee import aggregate, by_line
from .energy import MAX_KWH_PER_MINUTE, aggregate_energy
from .policy import yuan_plain

if TYPE_CHECKING:
    from .oee import OeeTotals
    from .verify import DeviceResult, Report

SCHEMA = "shangyun.verify/1"
TOP_REASONS = 5


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return str(np.datetime64(ns, "ns").astype("datetime64[s]")) + "Z"


def _identity(r: "DeviceResult") -> dict[str, Any] | None:
    ident = r.info.identity
    if ident is None:
        return None
    return {"fingerprint": ident.fingerprint() or None, **ident.to_dict()}


def _device_dict(r: "DeviceResult") -> dict[str, Any]:
    a = r.activity
    return {
        "id": r.info.id, "name": r.info.name, "source": r.info.source, "line": r.info.line,
        "protocol": r.info.protocol, "identity": _identity(r),
        "first_data": _iso(a.first_data_ns), "last_data": _iso(a.last_data_ns),
        "days_with_data": a.days_with_data, "days_active": a.days_active,
        "running_hours": round(a.running_hours, 2), "count_total": round(a.count_total, 1),
        "first_half_active_share": None if a.first_half_share is None
        else round(a.first_half_share, 4),
        "counted": r.counted, "reasons": sorted({f.reason for f in r.flags}),
        "flags": [f.to_dict() for f in r.flags],
        "oee": {**r.oee.totals.to_dict(),
                "longest_downtime": [e.to_dict() for e in r.oee.downtime.longest]},
        "energy": r.energy.totals.to_dict(daily=False),
    }


def report_to_dict(report: "Report", *, generated_at: dt.datetime | None = None
                   ) -> dict[str, Any]:
    t, v = report.terms, report.verdict
    reasons = Counter(reason for r in report.devices for reason in {f.reason for f in r.flags})
    plant_oee = aggregate(r.oee for r in report.devices)
    plant_energy = aggregate_energy(r.energy for r in report.devices)
    analysed = report.analysed or report.window
    hourly = sum((r.oee.output_per_hour.astype(np.float64) for r in report.devices),
                 np.zeros(analysed.n_days * 24))
    dconf = report.config.distinct_config() if report.distinct_checked else None
    return {
        "schema": SCHEMA,
        "generated_at": generated_at.isoformat() if generated_at else None,
        "verdict": v.verdict,
        "window": {**report.window.to_dict(),
                   "analysed": {"from": analysed.start.isoformat(),
                                "to": analysed.end.isoformat(), "days": analysed.n_days}},
        "sources": report.sources,
        "voucher": {
            "programme": t.catalog.programme, "catalog": t.catalog.title,
            "catalog_source": t.catalog.source, "item": t.item.to_dict(),
            "amount": yuan_plain(t.amount_fen), "required_devices": v.required_devices,
            "counted_devices": v.counted_devices,
            "supported_amount": None if v.supported_amount_fen is None
            else yuan_plain(v.supported_amount_fen),
            "arithmetic": list(v.arithmetic),
            "reasons": [{"code": p.code, "message": p.message} for p in v.reasons],
        },
        "summary": {"devices": len(report.devices),
                    "counted": sum(r.counted for r in report.devices),
                    "not_counted": sum(not r.counted for r in report.devices),
                    "by_reason": dict(sorted(reasons.items()))},
        "thresholds": {
            "activity": report.config.activity.thresholds(report.window.n_days),
            "distinct": dconf.to_dict() if dconf is not None else None,
            "oee": report.config.oee.to_dict(),
            "tariff": report.config.energy.tariff.to_dict(),
        },
        "devices": [_device_dict(r) for r in report.devices],
        "oee": {"plant": plant_oee["plant"].to_dict() if plant_oee else None,
                "lines": {k: o.to_dict() for k, o in
                          sorted(aggregate((r.oee for r in report.devices), by_line).items())}},
        "output_per_hour": {"start": _iso(analysed.start_ns),
                            "unit": "parts per hour from the window's first local midnight, all devices",
                            "values": [round(float(x), 1) for x in hourly]},
        "energy": {"plant": plant_energy["plant"].to_dict() if plant_energy else None,
                   "lines": {k: e.to_dict(daily=False) for k, e in sorted(aggregate_energy(
                       (r.energy for r in report.devices),
                       key=lambda r: r.device.line or "(no line)").items())}},
        "capture": capture_to_dict(report.capture, report.window.zone),
        "notes": list(report.notes),
    }


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


_OEE_HEADER = ("id", "availability", "performance", "quality", "OEE", "run h", "planned busy h",
               "unknown h")


def _oee_row(device_id: str, t: "OeeTotals") -> tuple[str, ...]:
    quality = _pct(t.quality) + (" (assumed)" if t.quality_assumed and t.total > 0 else "")
    return (device_id, _pct(t.availability), _pct(t.performance), quality, _pct(t.oee),
            f"{t.run_s / 3600:.1f}", f"{t.busy_s / 3600:.1f}", f"{t.unknown_s / 3600:.1f}")


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns, two spaces apart, indented by two."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip()
            for row in rows]


def render_text(report: "Report") -> str:
    t, v = report.terms, report.verdict
    w = report.window
    lines = [
        f"shangyun verify — {t.catalog.title}",
        f"item {t.item.no} {t.item.name}; window {w.start} – {w.end} ({w.n_days} days, "
        f"{w.zone} time)",
        "",
        f"VERDICT: {v.verdict}",
    ]
    lines += [f"  ✗ {p.code}: {p.message}" for p in v.reasons]
    capture = capture_lines(report.capture, w.zone)
    if capture:
        lines += [""] + capture
    lines += ["", "Arithmetic:"] + [f"  {a}" for a in v.arithmetic]
    th = report.config.activity.thresholds(w.n_days)
    lines += ["", "Active-device thresholds:"]
    lines += [f"  {k} = {val}" for k, val in th.items()]
    if report.distinct_checked:
        lines += ["Distinctness thresholds:"]
        lines += [f"  {k} = {val}" for k, val in report.config.distinct_config().to_dict().items()]
    lines += ["", "Devices:"]
    header = ("id", "name", "identity", "first data", "last data", "days act", "run h",
              "counted / why not")
    rows = [header]
    for r in report.devices:
        ident = r.info.identity.fingerprint() if r.info.identity else ""
        rows.append((r.info.id, r.info.name, ident or "(none)",
                     _iso(r.activity.first_data_ns) or "—", _iso(r.activity.last_data_ns) or "—",
                     str(r.activity.days_active), f"{r.activity.running_hours:.1f}",
                     "yes" if r.counted else "no: " + ", ".join(
                         sorted({f.reason for f in r.flags}))))
    lines += _table(rows)
    lines += ["", "OEE per device (ISO 22400-2: OEE = A × P × Q, unknown time excluded; "
              "— = cannot be computed):"]
    lines += _table([_OEE_HEADER] + [_oee_row(r.info.id, r.oee.totals) for r in report.devices])
    flagged = [f for r in report.devices for f in r.flags]
    if flagged:
        lines += ["", "Why devices were not counted:"]
        for f in flagged:
            measure = f" [{f.measure} = {f.value} vs {f.threshold}]" if f.measure else ""
            other = f" (other: {f.other_device})" if f.other_device else ""
            lines.append(f"  {f.device_id}: {f.reason}{other} — {f.message}{measure}")
    plant = aggregate(r.oee for r in report.devices)["plant"]
    energy = aggregate_energy(r.energy for r in report.devices)["plant"]
    peak_kw, peak_at = energy.max_demand()
    lines += ["", "Plant OEE: "
              f"A {_pct(plant.availability)} × P {_pct(plant.performance)} × "
              f"Q {_pct(plant.quality)} = {_pct(plant.oee)}; unknown (no data) "
              f"{plant.unknown_s / 3600:.1f} h excluded",
              f"Plant energy: {energy.kwh:,.1f} kWh, cost {energy.cost:,.2f} "
              f"{report.config.energy.tariff.currency}, idle share {_pct(energy.share('idle'))}, "
              f"15-min max demand {peak_kw:.1f} kW at {peak_at or '—'}"]
    reasons = plant.reason_pareto()[:TOP_REASONS]
    if reasons:
        lines.append("Top downtime reasons (停机原因): " + "; ".join(
            f"{p['state']}" + (f" {p['reason_code']}" if p["reason_code"] else "")
            + f" {p['hours']:.1f} h in {p['events']} events ({p['share']:.0%})" for p in reasons))
    if energy.broken_minutes:
        lines.append(f"Energy: {energy.broken_minutes:,} device-minutes carried no plausible "
                     f"energy (not a number, or above {MAX_KWH_PER_MINUTE:,.0f} kWh in a minute) "
                     "and count 0")
    lines += [f"Note: {n}" for n in report.notes]
    return "\n".join(lines) + "\n"
