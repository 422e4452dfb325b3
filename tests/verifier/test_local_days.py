"""Review days are the programme's local days (Asia/Shanghai for Guangdong), not UTC days."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from edge.errors import VerificationInputError
from edge.model import DeviceSpec, SignalSpec
from edge.rollup_layout import F, empty_day
from edge.store import Store
from verifier.cli import main
from verifier.localtime import localise
from verifier.policy import Voucher
from verifier.reading import MemoryReader, StoreReader
from verifier.verify import verify
from verifier.window import Window

from .cubes import empty_cube, minutes, set_state

EVENING = dt.date(2024, 3, 5)      # the UTC day whose 16:00-24:00 is 3-6 00:00-08:00 in China
VOUCHER = Voucher(item="设备物联", amount=1500)


def evening_shift() -> MemoryReader:
    """One machine running 16:00-24:00 UTC on 2024-03-05 only, on 8 kW."""
    cube = empty_cube(1, 3, start=EVENING - dt.timedelta(days=1))
    set_state(cube, 0, 1, minutes(16, 24), "running", power_mean_kw=8.0, power_max_kw=8.0,
              energy_kwh=8.0 / 60, count_total=2.0, count_good=2.0)
    return MemoryReader(cube.devices, cube)


def _activity(window: Window):
    report = verify(evening_shift(), window=window, voucher=VOUCHER)
    return report, report.devices[0].activity


def test_activity_between_16_and_24_utc_counts_for_the_next_local_day():
    report, act = _activity(Window(EVENING + dt.timedelta(days=1), EVENING + dt.timedelta(days=1)))
    assert report.window.zone == "Asia/Shanghai"        # the 2020 catalog's timezone
    assert act.days_with_data == 1 and act.days_active == 1
    assert act.running_hours == pytest.approx(8.0)
    doc = report.to_dict()
    assert doc["window"]["timezone"] == "Asia/Shanghai"
    assert doc["energy"]["plant"]["kwh_by_day"] == {"2024-03-06": pytest.approx(64.0)}
    assert doc["devices"][0]["first_data"] == "2024-03-05T16:00:00Z"   # instants stay UTC
    assert "(1 days, Asia/Shanghai time)" in report.render_text()


def test_the_utc_day_it_happened_on_holds_nothing_locally():
    _, act = _activity(Window(EVENING, EVENING))
    assert act.days_with_data == 0 and act.days_active == 0


def test_a_utc_review_still_sees_it_on_its_utc_day():
    _, act = _activity(Window(EVENING, EVENING, "UTC"))
    assert act.days_active == 1


def test_unknown_zone_is_bad_input():
    with pytest.raises(VerificationInputError, match="unknown time zone 'Mars/Olympus'"):
        Window(EVENING, EVENING, "Mars/Olympus")


def test_daylight_saving_day_uses_the_zones_own_midnights():
    # Europe/Berlin springs forward on 2024-03-31: that day has 23 hours.
    cube = empty_cube(1, 3, start=dt.date(2024, 3, 30))
    set_state(cube, 0, 0, minutes(22, 24), "running")   # 3-30 23:00-01:00 CET
    set_state(cube, 0, 1, minutes(22, 23), "idle")      # 4-01 00:00-01:00 CEST
    days = np.arange(np.datetime64("2024-03-30"), np.datetime64("2024-04-02"))
    local = localise(cube, days, "Europe/Berlin")
    running = local.data[0, :, F["running_s"], :].sum(axis=1) / 60
    idle = local.data[0, :, F["idle_s"], :]
    assert running.tolist() == [60, 60, 0]              # one hour on each side of midnight
    assert idle[2, :60].sum() == 60 * 60 and idle[:2].sum() == 0
    assert local.data[0, 1, F["samples"], 23 * 60:].sum() == 0   # the 23-hour day's tail


def _store(path) -> str:
    store = Store.open(str(path))
    store.upsert_device(DeviceSpec(id="m000", name="evening machine", protocol="opcua",
                                   connection={}, signals=(SignalSpec("state"),)))
    arr = empty_day()
    arr[F["running_s"], 16 * 60:] = 60.0
    arr[F["count_total"], 16 * 60:] = 1.0
    arr[F["samples"], 16 * 60:] = 60
    for k in range(3):
        store.write_rollup_day("m000", EVENING + dt.timedelta(days=k), arr)
    store.close()
    return str(path)


def test_store_reader_and_timezone_flag(tmp_path):
    path = _store(tmp_path / "s.db")
    with StoreReader([path]) as reader:
        local = next(reader.iter_cubes(Window(EVENING, EVENING + dt.timedelta(days=3),
                                              "Asia/Shanghai")))
        assert reader.data_span(Window(EVENING, EVENING + dt.timedelta(days=9),
                                       "Asia/Shanghai")) == (EVENING, EVENING + dt.timedelta(days=3))
    running = (local.data[0, :, F["running_s"], :].sum(axis=1) / 3600).tolist()
    assert running == [0, 8, 8, 8]
    out = tmp_path / "r.json"
    for zone, first_day in (("UTC", 8), ("Asia/Shanghai", 0)):
        main([path, "--item", "设备物联", "--amount", "1500", "--from", str(EVENING),
              "--to", str(EVENING), "--timezone", zone, "--json", str(out), "--quiet"])
        doc = json.loads(out.read_text())
        assert doc["window"]["timezone"] == zone
        assert doc["devices"][0]["running_hours"] == first_day
