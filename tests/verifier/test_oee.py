"""OEE against cases computed by hand (see each test's comment for the arithmetic)."""

import numpy as np
import pytest

from edge.errors import VerificationInputError
from edge.rollup_layout import F
from verifier.oee import OeeConfig, aggregate, analyse_oee, by_line
from verifier.shifts import ShiftCalendar

from .cubes import device, empty_cube, minutes, set_state

# One shift 08:00–16:00 with a break 12:00–12:30, in UTC to keep the hand arithmetic plain.
SHIFT = ShiftCalendar.from_mapping({"utc_offset_h": 0, "shifts": [
    {"name": "day", "start": "08:00", "end": "16:00", "breaks": [["12:00", "12:30"]]}]})


def shift_day_cube():
    cube = empty_cube(1, 1, devices=[device(0, ideal_cycle_s=20.0, line="L1")])
    set_state(cube, 0, 0, minutes(8, 10), "running", count_total=2)
    set_state(cube, 0, 0, minutes(10, 10.5), "fault")
    set_state(cube, 0, 0, minutes(10.5, 12), "running", count_total=2)
    set_state(cube, 0, 0, minutes(12, 12.5), "planned_stop")        # the break
    # 12:30–13:00 no data at all
    set_state(cube, 0, 0, minutes(13, 14), "idle")
    set_state(cube, 0, 0, minutes(14, 15), "planned_stop")          # planned maintenance
    set_state(cube, 0, 0, minutes(15, 16), "running", count_total=2, count_reject=0.2)
    set_state(cube, 0, 0, minutes(16, 17), "running", count_total=2)  # after the shift
    return cube


def test_shift_with_break_downtime_and_gap():
    (r,) = analyse_oee(shift_day_cube(), OeeConfig(calendar=SHIFT))
    t = r.totals
    # planned 7.5 h; 0.5 h unknown; 1 h planned stop -> PBT 6 h; run 2 + 1.5 + 1 = 4.5 h
    assert t.planned_s == 7.5 * 3600
    assert t.unknown_s == pytest.approx(0.5 * 3600)
    assert t.busy_s == pytest.approx(6 * 3600)
    assert t.run_s == pytest.approx(4.5 * 3600)
    assert t.overtime_run_s == pytest.approx(3600)
    assert t.availability == pytest.approx(0.75)
    # 270 running minutes × 2 = 540 parts × 20 s = 3 h ideal over 4.5 h run
    assert t.total == pytest.approx(540)
    assert t.performance == pytest.approx(2 / 3)
    # 60 × 0.2 = 12 rejects -> 528 good
    assert t.good == pytest.approx(528, abs=1e-3)
    assert t.quality == pytest.approx(528 / 540)
    assert t.oee == pytest.approx(0.75 * (2 / 3) * (528 / 540))
    assert not t.quality_assumed


def test_downtime_events_mtbf_mttr_and_pareto():
    (r,) = analyse_oee(shift_day_cube(), OeeConfig(calendar=SHIFT))
    t = r.totals
    assert t.stop_events == {"idle": 1, "stopped": 0, "fault": 1, "setup": 0}
    assert t.stop_s["fault"] == pytest.approx(1800) and t.stop_s["idle"] == pytest.approx(3600)
    assert t.failures == 1
    assert t.mtbf_h == pytest.approx(4.5) and t.mttr_h == pytest.approx(0.5)
    longest = [(e.state, e.minutes) for e in r.downtime.longest]
    assert longest == [("idle", 60), ("fault", 30)]
    assert r.downtime.longest[1].to_dict()["start"] == "2024-03-01T10:00:00Z"
    pareto = [(p["loss"], p["hours"]) for p in t.pareto()]
    # speed loss 4.5 h − 3 h = 1.5 h; idle 1 h; fault 0.5 h; quality 12 parts × 20 s
    assert pareto == [("speed loss", 1.5), ("idle (unplanned stop)", 1.0),
                      ("fault (unplanned stop)", 0.5), ("quality loss", pytest.approx(0.067, abs=1e-3))]
    assert t.pareto()[-1]["cumulative_share"] == pytest.approx(1.0)


def test_gap_is_unknown_not_downtime_and_splits_events():
    cube = empty_cube(1, 1, devices=[device(0, ideal_cycle_s=30.0)])
    set_state(cube, 0, 0, minutes(0, 1), "stopped")
    set_state(cube, 0, 0, minutes(2, 3), "stopped")   # 01:00–02:00 missing
    set_state(cube, 0, 0, minutes(3, 24), "running", count_total=2)
    (r,) = analyse_oee(cube)  # 24/7
    t = r.totals
    assert t.unknown_s == pytest.approx(3600)
    assert t.busy_s == pytest.approx(23 * 3600)
    assert t.availability == pytest.approx(21 / 23)
    assert t.stop_events["stopped"] == 2 and t.stop_s["stopped"] == pytest.approx(7200)


def test_setup_configured_as_planned_moves_out_of_busy_time():
    cube = empty_cube(1, 1, devices=[device(0, ideal_cycle_s=30.0)])
    set_state(cube, 0, 0, minutes(0, 6), "setup")
    set_state(cube, 0, 0, minutes(6, 24), "running", count_total=2)
    unplanned = analyse_oee(cube)[0].totals
    planned = analyse_oee(cube, OeeConfig(planned_states=frozenset({"planned_stop", "setup"})))[0].totals
    assert unplanned.availability == pytest.approx(18 / 24)
    assert planned.availability == pytest.approx(1.0)
    assert planned.planned_stop_s == pytest.approx(6 * 3600)


def test_counts_add_across_a_counter_wrap_as_delivered_by_rollups():
    # The rollup turns a 16-bit wrap (65534 -> 3) into an increase of 5 in that minute; a
    # negative increase (what a naive difference would give) must never reduce output.
    cube = empty_cube(1, 2, devices=[device(0, ideal_cycle_s=60.0)])
    for k in range(2):
        set_state(cube, 0, k, slice(None), "running", count_total=1, count_good=1)
    cube.data[0, 0, F["count_total"], 1439] = 5   # the wrap, last minute of day 0
    cube.data[0, 0, F["count_good"], 1439] = 5
    cube.data[0, 1, F["count_total"], 0] = -65531  # must be ignored
    (r,) = analyse_oee(cube)
    assert r.totals.total == pytest.approx(2 * 1440 - 1 + 5 - 1)
    assert r.output_per_hour[23] == pytest.approx(59 + 5)
    assert r.output_per_hour[24] == pytest.approx(59)


def test_performance_needs_an_ideal_cycle_and_quality_may_be_assumed():
    cube = empty_cube(1, 1)
    set_state(cube, 0, 0, slice(None), "running", count_total=1)
    t = analyse_oee(cube)[0].totals
    assert t.performance is None and t.oee is None
    assert t.quality_assumed and t.quality == 1.0


def test_line_and_plant_sum_components_not_ratios():
    devs = [device(0, ideal_cycle_s=60.0, line="A"), device(1, ideal_cycle_s=60.0, line="A"),
            device(2, ideal_cycle_s=60.0, line="B")]
    cube = empty_cube(3, 1, devices=devs)
    set_state(cube, 0, 0, slice(None), "running", count_total=1)           # A=1
    set_state(cube, 1, 0, minutes(0, 6), "running", count_total=1)       # A=1 for 6 h
    set_state(cube, 1, 0, minutes(6, 24), "idle")
    set_state(cube, 2, 0, minutes(0, 12), "running", count_total=0.5)
    set_state(cube, 2, 0, minutes(12, 24), "fault")
    rs = analyse_oee(cube)
    lines = aggregate(rs, by_line)
    assert lines["A"].availability == pytest.approx(30 / 48)
    assert lines["B"].performance == pytest.approx(0.5)
    plant = aggregate(rs)["plant"]
    assert plant.availability == pytest.approx(42 / 72)
    assert plant.failures == 1 and plant.mttr_h == pytest.approx(12)


def test_calendar_local_time_weekdays_and_night_shift():
    # UTC+8: a local 08:00–10:00 shift is 00:00–02:00 UTC; Monday only.
    cal = ShiftCalendar.from_mapping({"shifts": [
        {"start": "08:00", "end": "10:00", "days": ["mon"]},
        {"start": "22:00", "end": "02:00", "days": ["sun"]}]})
    days = np.arange(np.datetime64("2024-03-03"), np.datetime64("2024-03-06"))  # Sun, Mon, Tue
    mask = cal.planned_mask(days)
    # Sunday-night shift: local Sun 22:00 – Mon 02:00 = UTC Sun 14:00–18:00
    assert mask[0].sum() == 240 and mask[0, 14 * 60] and not mask[0, 18 * 60]
    assert mask[1].sum() == 120 and mask[1, 0] and not mask[1, 120]
    assert mask[2].sum() == 0
    assert ShiftCalendar().planned_mask(days).all()
    holiday = ShiftCalendar.from_mapping({"utc_offset_h": 0, "holidays": ["2024-03-04"]})
    assert holiday.planned_mask(days).sum(axis=1).tolist() == [1440, 0, 1440]


@pytest.mark.parametrize("raw", [
    {"shifts": [{"start": "8", "end": "16:00"}]},
    {"shifts": [{"start": "08:00", "end": "08:00"}]},
    {"shifts": [{"start": "08:00", "end": "16:00", "days": ["funday"]}]},
    {"holidays": ["2024-13-01"]},
])
def test_bad_calendar_is_a_clear_input_error(raw):
    with pytest.raises(VerificationInputError):
        ShiftCalendar.from_mapping(raw)


def test_bad_state_configuration_rejected():
    with pytest.raises(ValueError):
        OeeConfig(planned_states=frozenset({"lunch"}))
    with pytest.raises(ValueError):
        OeeConfig(planned_states=frozenset({"running"}))
