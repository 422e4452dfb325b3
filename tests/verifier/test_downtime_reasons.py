"""Downtime events carry the machine's own stop reason codes, and losses rank by them."""
from __future__ import annotations

from edge.rollup_layout import F
from verifier.oee import OeeConfig, aggregate, analyse_oee

from .cubes import empty_cube, minutes, run_all_day, set_state


def _reason(cube, d, k, span, code):
    cube.data[d, k, F["reason_code"], span] = code


def _stop(cube, d, span, state, code=0):
    """Replace running by `state` (with its reason code) over the span of day 0."""
    cube.data[d, 0, F["running_s"], span] = 0
    cube.data[d, 0, F["count_total"], span] = 0
    cube.data[d, 0, F["count_good"], span] = 0
    set_state(cube, d, 0, span, state)
    if code:
        _reason(cube, d, 0, span, code)


def test_events_take_their_reason_code_and_the_pareto_ranks_reasons():
    cube = empty_cube(2, 1)
    for d in range(2):
        run_all_day(cube, d, 0)
    # device 0: fault 31 for 30 min and 20 min, fault 32 for 60 min, idle 11 for 10 min
    _stop(cube, 0, minutes(1, 1.5), "fault", 31)
    _stop(cube, 0, minutes(3, 3 + 20 / 60), "fault", 31)
    _stop(cube, 0, minutes(5, 6), "fault", 32)
    _stop(cube, 0, minutes(8, 8 + 10 / 60), "idle", 11)
    # device 1 reports no codes for its 15-minute fault: attributed to the state alone
    _stop(cube, 1, minutes(2, 2.25), "fault")
    # one event whose minutes carry two codes: the code on most of its minutes wins
    _stop(cube, 1, minutes(4, 4.5), "idle")
    _reason(cube, 1, 0, minutes(4, 4 + 20 / 60), 12)
    _reason(cube, 1, 0, minutes(4 + 20 / 60, 4.5), 11)

    res = analyse_oee(cube, OeeConfig())
    pareto = res[0].totals.reason_pareto()
    assert [(p["state"], p["reason_code"], p["events"], p["hours"]) for p in pareto] == [
        ("fault", 32, 1, 1.0), ("fault", 31, 2, round(50 / 60, 3)), ("idle", 11, 1, round(10 / 60, 3))]
    assert pareto[-1]["cumulative_share"] == 1.0
    longest = res[0].downtime.longest[0]
    assert (longest.state, longest.reason_code, longest.minutes) == ("fault", 32, 60)

    dev1 = {(p["state"], p["reason_code"]): p["events"] for p in res[1].totals.reason_pareto()}
    assert dev1 == {("fault", None): 1, ("idle", 12): 1}

    plant = aggregate(res)["plant"]
    assert plant.reason_events == {"fault/32": 1, "fault/31": 2, "idle/11": 1, "fault": 1,
                                   "idle/12": 1}
    assert plant.to_dict()["downtime_by_reason"][0]["reason_code"] == 32
