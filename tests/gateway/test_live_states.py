"""/api/status never fails, whatever state a device is in: every odd thing a real plant produces
(a machine gone away, a register reading NaN, a state code nobody mapped, a device that answers
with nothing but BAD data) is written to a real store and read back through the real HTTP API."""
from __future__ import annotations

import datetime as dt
import json
import math

import httpx
import pytest

from edge.model import NS_PER_S, DeviceSpec, Quality, Sample, SignalSpec, now_ns
from edge.rollup_layout import F, empty_day
from edge.store import Store
from gateway import api
from gateway.live import snapshot
from gateway.status import device_status, render

SIGNALS = (SignalSpec(name="state", address=None), SignalSpec(name="power_kw", address=None))


def _spec(device_id: str) -> DeviceSpec:
    return DeviceSpec(id=device_id, name=device_id, protocol="modbus", connection={},
                      signals=SIGNALS)


def _plant(path) -> Store:
    """One device per odd case, all online unless the case is about being offline."""
    store = Store.open(path)
    now = now_ns()
    t = now - 5 * NS_PER_S
    cases: dict[str, list[tuple[str, object, Quality]]] = {
        "good": [("state", "running", Quality.GOOD), ("power_kw", 3.25, Quality.GOOD)],
        "offline": [("state", "running", Quality.GOOD), ("power_kw", 2.0, Quality.GOOD)],
        "nan-power": [("state", "idle", Quality.GOOD), ("power_kw", math.nan, Quality.GOOD)],
        "inf-power": [("state", "idle", Quality.GOOD), ("power_kw", math.inf, Quality.GOOD)],
        "text-power": [("state", "idle", Quality.GOOD), ("power_kw", "1,5 kW", Quality.GOOD)],
        "odd-state": [("state", "exploding", Quality.GOOD), ("power_kw", 1.0, Quality.GOOD)],
        "uncertain": [("state", "running", Quality.UNCERTAIN), ("power_kw", 1.5, Quality.UNCERTAIN)],
        "degraded": [("state", "", Quality.BAD), ("power_kw", "", Quality.BAD)],
        "no-samples": [],
    }
    for device_id, rows in cases.items():
        store.upsert_device(_spec(device_id))
        store.set_status(device_id, online=device_id != "offline", ts_ns=t)
        store.write_samples([Sample(device_id, sig, t, v, q) for sig, v, q in rows])
    # The BAD markers the gateway writes when a machine goes away are newer than its last real
    # sample; "last sample" must still be the real one.
    store.write_samples([Sample("offline", s.name, t + NS_PER_S, "", Quality.BAD) for s in SIGNALS])
    store.set_status("offline", online=False, ts_ns=t + NS_PER_S, error="connection refused")
    today = dt.datetime.fromtimestamp(now / NS_PER_S, tz=dt.timezone.utc).date()
    good_day = empty_day()
    good_day[F["running_s"], :60] = 60
    good_day[F["count_total"], :60] = 3
    good_day[F["count_good"], :60] = 3
    store.write_rollup_day("good", today, good_day)
    nan_day = good_day.copy()
    # Not a summary column (the store refuses NaN there), so the NaN reaches the day blob.
    nan_day[F["idle_s"], 60:70] = math.nan
    store.write_rollup_day("nan-power", today, nan_day)
    return store


@pytest.fixture
def plant(tmp_path):
    store = _plant(tmp_path / "plant.db")
    yield store
    store.close()


def _by_id(status: dict) -> dict[str, dict]:
    return {d["id"]: d for d in status["devices"]}


def test_snapshot_survives_every_device_state_and_is_strict_json(plant):
    snap = snapshot(plant)
    # Starlette refuses NaN/inf (allow_nan=False) with a 500: the snapshot must already be clean.
    json.dumps(snap, allow_nan=False)
    devices = _by_id(snap)
    assert set(devices) == {"good", "offline", "nan-power", "inf-power", "text-power",
                            "odd-state", "uncertain", "degraded", "no-samples"}
    assert devices["good"]["power_kw"] == 3.25 and devices["good"]["machine_state"] == "running"
    assert devices["good"]["today"]["parts"] == 180
    for odd in ("nan-power", "inf-power", "text-power", "offline", "degraded"):
        assert devices[odd]["power_kw"] is None, odd
    assert devices["odd-state"]["machine_state"] is None
    assert "exploding" in devices["odd-state"]["error"]
    assert devices["offline"]["state"] == "offline" and devices["offline"]["machine_state"] is None
    assert devices["no-samples"]["state"] == "never seen"
    assert devices["no-samples"]["today"] == {"covered_min": 0}
    assert snap["plant"]["running"] == 1  # `uncertain` says running, but not trustworthily
    assert snap["plant"]["parts"] == 360


def test_last_sample_is_the_last_good_one_and_bad_only_is_degraded(plant):
    status = _by_id(device_status(plant))
    offline = status["offline"]
    assert offline["state"] == "offline"
    # The disconnect marker is 1 s newer than the machine's own last sample.
    assert offline["last_sample_age_s"] >= 5.0 - 0.5
    assert status["good"]["state"] == "online"
    assert status["degraded"]["state"] == "degraded"
    assert status["degraded"]["last_sample"] is None
    assert status["uncertain"]["state"] == "online"
    table = render(device_status(plant))
    assert "degraded" in table


async def test_status_api_is_200_with_valid_json_for_every_state(plant):
    plant.close()  # the API opens its own read-only connection, as it does beside a gateway
    server = await api.serve(api.create_app(plant.path), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.bound_port(server)}") as c:
            resp = await c.get("/api/status")
    finally:
        await api.stop(server)
    assert resp.status_code == 200, resp.text[:500]
    body = json.loads(resp.text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert len(body["devices"]) == 9
    assert _by_id(body)["degraded"]["state"] == "degraded"
