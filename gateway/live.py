"""What the live dashboard shows, computed from the store: each machine's present state and
today's figures from its minute rollups (the same rollups the verifier reads, so the numbers
agree), plus the plant totals.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from datetime import datetime, timezone
from typing import Any

import numpy as np

from edge.model import NS_PER_S, Quality, State, now_ns
from edge.records import DeviceRecord
from edge.rollup_layout import F, STATE_FIELDS
from edge.store import Store
from verifier.cube import DeviceInfo, RollupCube
from verifier.oee import OeeConfig, analyse_oee

from .status import device_status

log = logging.getLogger(__name__)

RECENT_S = 600
OEE = OeeConfig()


def today_figures(device_id: str, day: dt.date, arr: np.ndarray | None,
                  ideal_cycle_s: float | None, oee_config: OeeConfig = OEE) -> dict[str, Any]:
    """Totals of one day record, and its OEE factors computed by the verifier's own OEE (the
    plant's calendar, 24/7 by default; unknown time excluded), so dashboard and report cannot
    disagree."""
    if arr is None:
        return {"covered_min": 0}
    secs = {name[:-2]: float(arr[F[name]].sum()) for name in STATE_FIELDS}
    cube = RollupCube([DeviceInfo(id=device_id, ideal_cycle_s=ideal_cycle_s)],
                      np.array([np.datetime64(day, "D")]), arr[None, None].astype(np.float32),
                      np.ones((1, 1), dtype=bool))
    oee = analyse_oee(cube, oee_config)[0].totals
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


def snapshot(store: Store, *, window_s: float = 10.0,
             oee: OeeConfig | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as strict JSON data (no NaN or infinity anywhere).

    Each device is computed on its own: whatever one device's samples or rollups hold, the
    others are still shown, and the failing one carries an `error` text instead of figures.
    """
    now = now_ns()
    status = device_status(store, window_s=window_s, at_ns=now)
    today = datetime.fromtimestamp(now / NS_PER_S, tz=timezone.utc).date()
    since = now - RECENT_S * NS_PER_S
    records = {d.id: d for d in store.devices()}
    plant = {"parts": 0, "energy_kwh": 0.0, "running": 0}
    errors = 0
    for row in status["devices"]:
        try:
            _live_row(store, row, records.get(row["id"]), today, since, oee or OEE)
        except Exception as e:  # noqa: BLE001 - one bad device must not blank the dashboard
            _log_once(row["id"], e)
            row.update(machine_state=None, machine_quality=None, power_kw=None,
                       today={"covered_min": 0})
            row["error"] = f"{type(e).__name__}: {e}"
        errors += row.get("error") is not None
        plant["parts"] += _finite(row["today"].get("parts")) or 0
        plant["energy_kwh"] += _finite(row["today"].get("energy_kwh")) or 0.0
        plant["running"] += row["machine_state"] == "running" and row["machine_quality"] == "good"
    plant["parts"] = int(plant["parts"])
    plant["energy_kwh"] = round(plant["energy_kwh"], 2)
    status["plant"] = plant
    status["device_errors"] = errors
    status["day"] = today.isoformat()
    status["generated_at"] = datetime.fromtimestamp(now / NS_PER_S, tz=timezone.utc).isoformat(
        timespec="seconds")
    return strict_json(status)


def _live_row(store: Store, row: dict[str, Any], rec: DeviceRecord | None, today: dt.date,
              since: int, oee: OeeConfig) -> None:
    problems = [row["error"]] if row.get("error") else []
    row["machine_state"], row["machine_quality"] = None, None
    row["power_kw"] = None
    if row["state"] == "online":
        state = store.latest(row["id"], "state", since)
        if state is not None and state.quality != Quality.BAD:
            try:
                row["machine_state"] = State.parse(state.value).value
                row["machine_quality"] = state.quality.name.lower()
            except ValueError:
                problems.append(f"state value {state.value!r} is not a known state")
        power = store.latest(row["id"], "power_kw", since)
        if power is not None and power.quality != Quality.BAD:
            kw = _finite(power.value)
            if kw is None:
                problems.append(f"power_kw value {power.value!r} is not a finite number")
            else:
                row["power_kw"] = round(kw, 2)
    ideal = rec.ideal_cycle_s if rec is not None else None
    row["today"] = today_figures(row["id"], today, store.rollup_day(row["id"], today), ideal,
                                 oee)
    row["error"] = "; ".join(problems) or None


def _finite(v: Any) -> float | None:
    """`v` as a finite number, or None (BAD markers, NaN, inf, text, bools)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def strict_json(v: Any) -> Any:
    """`v` with every non-finite float replaced by None: JSON has no NaN, and the API's encoder
    refuses one with a 500 for the whole page."""
    if isinstance(v, dict):
        return {k: strict_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [strict_json(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


_logged: set[tuple[str, str]] = set()


def _log_once(device_id: str, exc: Exception) -> None:
    # The page polls every few seconds; the same failure is worth one log line, not thousands.
    key = (device_id, f"{type(exc).__name__}: {exc}")
    if key not in _logged and len(_logged) < 10_000:
        _logged.add(key)
        log.warning("dashboard figures for %s failed: %s", device_id, key[1], exc_info=exc)
