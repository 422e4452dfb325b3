import datetime as dt

import numpy as np
import pytest

from verifier.activity import ActivityConfig, analyse_activity, identity_events_in, share_to_days
from verifier.reading import EventRecord
from verifier.window import Window

from .cubes import START, empty_cube, run_all_day, set_state, minutes


def reasons(result):
    return sorted(f.reason for f in result.flags)


def test_device_running_every_day_is_active():
    cube = empty_cube(1, 10)
    for k in range(10):
        run_all_day(cube, 0, k)
    (r,) = analyse_activity(cube)
    assert r.active and r.days_active == 10 and r.days_with_data == 10
    assert r.running_hours == pytest.approx(240.0)
    assert r.count_total == pytest.approx(10 * 1440)
    assert r.first_data_ns == Window(START, START).start_ns
    assert r.last_data_ns == Window(START, START + dt.timedelta(days=9)).end_ns


def test_too_few_days_and_inactive():
    cube = empty_cube(1, 10)
    for k in range(5):  # 5 of 10 days; 6 needed for data at 60%
        run_all_day(cube, 0, k)
    (r,) = analyse_activity(cube)
    assert reasons(r) == ["too_few_days"]
    flag = r.flags[0]
    assert flag.value == 5 and flag.threshold == 6


def test_idle_only_device_has_data_but_is_inactive():
    cube = empty_cube(1, 10)
    for k in range(10):
        set_state(cube, 0, k, slice(None), "idle", power_mean_kw=1.0)  # constant power: noise
    (r,) = analyse_activity(cube)
    assert r.days_with_data == 10 and r.days_active == 0
    assert reasons(r) == ["inactive"]


@pytest.mark.parametrize("how", ["running", "counts", "power"])
def test_each_kind_of_operation_makes_a_day_active(how):
    cube = empty_cube(1, 2)
    for k in range(2):
        set_state(cube, 0, k, slice(None), "idle", power_mean_kw=1.0)
        if how == "running":
            set_state(cube, 0, k, minutes(8, 8.25), "running")  # 15 minutes >= 10
        elif how == "counts":
            cube.data[0, k, 6, 100] = 1  # count_total
        else:
            cube.data[0, k, 10, ::2] = 3.0  # power_mean_kw alternates 3 / 1
    (r,) = analyse_activity(cube)
    assert r.days_active == 2 and r.active


def test_short_running_does_not_make_a_day_active():
    cube = empty_cube(1, 2)
    for k in range(2):
        set_state(cube, 0, k, slice(None), "idle", power_mean_kw=1.0)
        set_state(cube, 0, k, minutes(8, 8.1), "running")  # 6 minutes < 10
    (r,) = analyse_activity(cube)
    assert r.days_active == 0


def test_bunched_at_end():
    cube = empty_cube(1, 20)
    for k in range(8):
        set_state(cube, 0, k, slice(None), "idle", power_mean_kw=1.0)  # data, no work
    for k in range(8, 20):
        run_all_day(cube, 0, k)
    (r,) = analyse_activity(cube)
    # 12 active days, 2 of them (days 8, 9) in the first half: 1/6 < 25%
    assert r.first_half_share == pytest.approx(2 / 12)
    assert "bunched_at_end" in reasons(r)
    bunched = [f for f in r.flags if f.reason == "bunched_at_end"][0]
    assert bunched.days[0] == "2024-03-09" and len(bunched.days) == 12


def test_identity_change_in_window_flags_device():
    cube = empty_cube(2, 4)
    for d in range(2):
        for k in range(4):
            run_all_day(cube, d, k)
    w = Window(START, START + dt.timedelta(days=3))
    evs = [EventRecord(w.start_ns + 10, "m001", "identity_changed", {"from": "a", "to": "b"}),
           EventRecord(w.start_ns - 10, "m000", "identity_changed", {}),  # before the window
           EventRecord(w.start_ns + 10, "m000", "connected", {})]
    r0, r1 = analyse_activity(cube, identity_events=identity_events_in(evs, w.start_ns, w.end_ns))
    assert r0.active
    assert reasons(r1) == ["identity_changed"] and r1.flags[0].evidence == {"from": "a", "to": "b"}


def test_thresholds_are_reported_and_shares_round_up_exactly():
    assert share_to_days(0.6, 5) == 3
    assert share_to_days(0.6, 90) == 54
    assert share_to_days(0.5, 7) == 4
    th = ActivityConfig().thresholds(90)
    assert th["min_data_days"] == 54 and th["min_active_days"] == 45
    with pytest.raises(ValueError):
        ActivityConfig(min_data_days_share=1.5)


def test_vectorised_over_devices_independently():
    cube = empty_cube(3, 10)
    for k in range(10):
        run_all_day(cube, 0, k)
    for k in range(3):
        run_all_day(cube, 2, k)
    rs = analyse_activity(cube)
    assert [r.days_active for r in rs] == [10, 0, 3]
    assert rs[1].first_data_ns is None and rs[1].running_hours == 0
    assert np.isclose(rs[2].running_hours, 72)
