"""What the live dashboard shows, computed from the store: each machine's present state and
today's figures from its minute rollups (the same rollups the verifier reads, so the numbers
agree), plus the plant totals.
"""
from __future__ import annotations

import datetime as dt
from datetime import datetime, timezone
from typing import Any

import numpy as np

from edge.model import NS_PER_S, now_ns
from edge.rollup_layout import F, STATE_FIELDS
from edge.store import Store
from verifier.cube import DeviceInfo, RollupCube
from verifier.oee import OeeConfig, analyse_oee

from .status import device_status

RECENT_S = 600
OEE = OeeConfig()


def today_figures(device_id: str, day: dt.date, arr: np.ndarray | None,
                  ideal_cycle_s: float | None) -> dict[str, Any]:
    """Totals of one day record, and its OEE factors computed by the verifier's own OEE
    (24/7 calendar, unknown time excluded), so dashboard and report cannot disagree."""
    if arr is None:
        return {"covered_min": 0}
    secs = {name[:-2]: float(arr[F[name]].sum()) for name in STATE_FIELDS}
    cube = RollupCube([DeviceInfo(id=device_id, ideal_cycle_s=ideal_cycle_s)],
                      np.array([np.datetime64(day, "D")]), arr[None, None].astype(np.float32),
                      np.ones((1, 1), dtype=bool))
    oee = analyse_oee(cube, OEE)[0].totals
    return {
        "covered_min": round(sum(secs.values()) / 60, 1),
        "state_min": {k: round(v / 60, 1) for k, v in secs.items()},
        "parts": int(arr[F["count_total"]].sum()),
        "good": int(arr[F["count_good"]].sum()),
        "energy_kwh": round(float(arr[F["energy_kwh"]].sum()), 2),
        **{k: None if v is None else round(v, 3) for k, v in (
            ("availability", oee.availability), ("performance", oee.performance),
            ("quality", oee.quality), ("oee", oee.oee))},
    }


def snapshot(store: Store, *, window_s: float = 10.0) -> dict[str, Any]:
    now = now_ns()
    status = device_status(store, window_s=window_s, at_ns=now)
    today = datetime.fromtimestamp(now / NS_PER_S, tz=timezone.utc).date()
    since = now - RECENT_S * NS_PER_S
    records = {d.id: d for d in store.devices()}
    plant = {"parts": 0, "energy_kwh": 0.0, "running": 0}
    for row in status["devices"]:
        rec = records[row["id"]]
        state = store.latest(row["id"], "state", since)
        power = store.latest(row["id"], "power_kw", since)
        row["machine_state"] = (state.value if state is not None and row["state"] == "online"
                                else None)
        row["power_kw"] = round(float(power.value), 2) if power is not None else None
        row["today"] = today_figures(row["id"], today, store.rollup_day(row["id"], today),
                                     rec.ideal_cycle_s)
        plant["parts"] += row["today"].get("parts", 0)
        plant["energy_kwh"] += row["today"].get("energy_kwh", 0.0)
        plant["running"] += row["machine_state"] == "running"
    plant["energy_kwh"] = round(plant["energy_kwh"], 2)
    status["plant"] = plant
    status["day"] = today.isoformat()
    status["generated_at"] = datetime.fromtimestamp(now / NS_PER_S, tz=timezone.utc).isoformat(
        timespec="seconds")
    return status
