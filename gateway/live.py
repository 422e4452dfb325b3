"""What the live dashboard shows, computed from the store: each machine's present state and
today's figures from its minute rollups (the same rollups the verifier reads, so the numbers
agree), plus the plant totals.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from edge.model import NS_PER_S, now_ns
from edge.rollup_layout import F, STATE_FIELDS
from edge.store import Store

from .status import device_status

RECENT_S = 600


def _latest(store: Store, device_id: str, signal: str, since_ns: int) -> Any:
    rows = store.samples(device_id, signal, start_ns=since_ns)
    return rows[-1] if rows else None


def today_figures(day: np.ndarray | None, ideal_cycle_s: float | None) -> dict[str, Any]:
    """Totals of one day record; OEE factors over the minutes with data (unknown time excluded)."""
    if day is None:
        return {"covered_min": 0}
    secs = {name[:-2]: float(day[F[name]].sum()) for name in STATE_FIELDS}
    covered = sum(secs.values())
    planned = covered - secs.get("planned_stop", 0.0)
    run = secs.get("running", 0.0)
    total = float(day[F["count_total"]].sum())
    good = float(day[F["count_good"]].sum())
    out: dict[str, Any] = {
        "covered_min": round(covered / 60, 1),
        "state_min": {k: round(v / 60, 1) for k, v in secs.items()},
        "parts": int(total),
        "good": int(good),
        "energy_kwh": round(float(day[F["energy_kwh"]].sum()), 2),
        "availability": round(run / planned, 3) if planned > 0 else None,
        "quality": round(good / total, 3) if total > 0 else None,
    }
    if ideal_cycle_s and run > 0:
        out["performance"] = round(ideal_cycle_s * total / run, 3)
    else:
        out["performance"] = None
    factors = [out["availability"], out["performance"], out["quality"]]
    out["oee"] = round(float(np.prod(factors)), 3) if all(f is not None for f in factors) else None
    return out


def snapshot(store: Store, *, window_s: float = 10.0) -> dict[str, Any]:
    now = now_ns()
    status = device_status(store, window_s=window_s, at_ns=now)
    today = datetime.fromtimestamp(now / NS_PER_S, tz=timezone.utc).date()
    since = now - RECENT_S * NS_PER_S
    records = {d.id: d for d in store.devices()}
    plant = {"parts": 0, "energy_kwh": 0.0, "running": 0}
    for row in status["devices"]:
        rec = records[row["id"]]
        state = _latest(store, row["id"], "state", since)
        power = _latest(store, row["id"], "power_kw", since)
        row["machine_state"] = (state.value if state is not None and row["state"] == "online"
                                else None)
        row["power_kw"] = round(float(power.value), 2) if power is not None else None
        row["today"] = today_figures(store.rollup_day(row["id"], today), rec.ideal_cycle_s)
        plant["parts"] += row["today"].get("parts", 0)
        plant["energy_kwh"] += row["today"].get("energy_kwh", 0.0)
        plant["running"] += row["machine_state"] == "running"
    plant["energy_kwh"] = round(plant["energy_kwh"], 2)
    status["plant"] = plant
    status["day"] = today.isoformat()
    status["generated_at"] = datetime.fromtimestamp(now / NS_PER_S, tz=timezone.utc).isoformat(
        timespec="seconds")
    return status
