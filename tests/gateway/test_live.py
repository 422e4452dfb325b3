"""Dashboard figures come from the verifier's OEE, so both show the same numbers."""
from __future__ import annotations

import datetime as dt

import numpy as np

from edge.rollup_layout import F, empty_day
from gateway.live import today_figures
from verifier.cube import DeviceInfo, RollupCube
from verifier.oee import OeeConfig, analyse_oee

DAY = dt.date(2026, 3, 2)


def test_day_figures_match_hand_computation_and_the_verifier():
    arr = empty_day()
    arr[F["running_s"], 0:600] = 60      # 10 h running
    arr[F["fault_s"], 600:720] = 60      # 2 h fault
    arr[F["planned_stop_s"], 720:780] = 60   # 1 h planned: not planned busy time
    # 780..1440: no data: unknown, excluded
    arr[F["count_total"], 0:600] = 2     # 1,200 parts
    arr[F["count_good"], 0:600] = 2
    arr[F["count_good"], 0:60] = 1       # 60 rejects
    arr[F["energy_kwh"], 0:600] = 0.25
    figs = today_figures("m1", DAY, arr, ideal_cycle_s=24.0)
    assert figs["covered_min"] == 780 and figs["parts"] == 1200 and figs["good"] == 1140
    assert figs["energy_kwh"] == 150.0
    assert figs["availability"] == round(600 / 720, 3)           # run / planned busy
    assert figs["performance"] == round(24.0 * 1200 / 36000, 3)  # ideal × count / run
    assert figs["quality"] == round(1140 / 1200, 3)
    cube = RollupCube([DeviceInfo(id="m1", ideal_cycle_s=24.0)],
                      np.array([np.datetime64(DAY, "D")]), arr[None, None],
                      np.ones((1, 1), dtype=bool))
    verifier = analyse_oee(cube, OeeConfig())[0].totals
    assert figs["oee"] == round(verifier.oee, 3)


def test_no_record_yet():
    assert today_figures("m1", DAY, None, 10.0) == {"covered_min": 0}
