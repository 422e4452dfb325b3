"""Energy against hand-computed cases."""
import datetime as dt

import numpy as np
import pytest

from edge.errors import VerificationInputError
from edge.rollup_layout import F
from verifier.cube import RollupCube
from verifier.energy import EnergyConfig, aggregate_energy, analyse_energy
from verifier.tariff import Tariff, guangdong_default

from .cubes import device, empty_cube, minutes, set_state

FLAT_UTC = Tariff.from_mapping({
    "utc_offset_h": 0, "prices_yuan_per_kwh": {"peak": 2.0, "flat": 1.0, "valley": 0.5},
    "periods": {"peak": [["08:00", "12:00"]], "valley": [["00:00", "06:00"]]}})


def constant(cube, d, k, sl, state, kw, **kw_fields):
    set_state(cube, d, k, sl, state, power_mean_kw=kw, power_max_kw=kw, energy_kwh=kw / 60,
              **kw_fields)


def test_guangdong_default_cost_by_period_in_july():
    # 10 kW all day on 2024-07-01 (CST = UTC+8): critical 3 h, peak 4 h, flat 9 h, valley 8 h
    cube = empty_cube(1, 1, start=dt.date(2024, 7, 1))
    constant(cube, 0, 0, slice(None), "running", 10.0)
    (r,) = analyse_energy(cube)
    t = r.totals
    assert t.kwh == pytest.approx(240, rel=1e-5)
    assert t.kwh_by_period == pytest.approx(
        {"critical_peak": 30, "peak": 40, "flat": 90, "valley": 80}, rel=1e-5)
    p = guangdong_default().prices
    expected = 30 * p["critical_peak"] + 40 * p["peak"] + 90 * p["flat"] + 80 * p["valley"]
    assert t.cost == pytest.approx(expected, rel=1e-5)


def test_no_critical_peak_outside_summer():
    cube = empty_cube(1, 1, start=dt.date(2024, 6, 30))
    constant(cube, 0, 0, slice(None), "running", 10.0)
    t = analyse_energy(cube)[0].totals
    assert t.kwh_by_period["critical_peak"] == 0
    assert t.kwh_by_period["peak"] == pytest.approx(70, rel=1e-5)


def test_idle_standby_shares_specific_energy_and_savings():
    cube = empty_cube(1, 1)
    constant(cube, 0, 0, minutes(0, 6), "idle", 2.0)            # 12 kWh idle, valley 0.5
    constant(cube, 0, 0, minutes(6, 8), "stopped", 0.5)         # 1 kWh standby, flat
    constant(cube, 0, 0, minutes(8, 12), "running", 10.0, count_total=1, count_good=1)  # 40 kWh peak
    constant(cube, 0, 0, minutes(12, 13), "idle", 2.0)          # 2 kWh idle, flat 1.0
    (r,) = analyse_energy(cube, EnergyConfig(FLAT_UTC))
    t = r.totals
    assert t.kwh == pytest.approx(55, rel=1e-5)
    assert t.kwh_by_state == pytest.approx({"running": 40, "idle": 14, "standby": 1, "other": 0},
                                           abs=1e-4)
    assert t.share("idle") == pytest.approx(14 / 55, rel=1e-5)
    assert t.share("standby") == pytest.approx(1 / 55, rel=1e-5)
    assert t.kwh_per_good_part == pytest.approx(55 / 240, rel=1e-5)
    assert t.idle_cost == pytest.approx(12 * 0.5 + 2 * 1.0, rel=1e-5)
    d = t.to_dict()
    assert d["savings_potential"]["kwh_per_year"] == pytest.approx(14 * 365, rel=1e-4)
    assert d["kwh_by_day"] == {"2024-03-01": pytest.approx(55, rel=1e-5)}


def test_15_minute_demand_is_clock_aligned():
    cube = empty_cube(1, 1)
    set_state(cube, 0, 0, slice(None), "idle")
    cube.data[0, 0, F["energy_kwh"], 7:22] = 40 / 60   # 40 kW for minutes 7..21
    t = analyse_energy(cube, EnergyConfig(FLAT_UTC))[0].totals
    peak, at = t.max_demand()
    assert peak == pytest.approx(40 * 8 / 15, rel=1e-5)   # 8 of the 15 minutes in 00:00–00:15
    assert at == "2024-03-01T00:00Z"


def test_plant_demand_adds_devices_in_the_same_quarter_only():
    cube = empty_cube(3, 1, devices=[device(0, line="A"), device(1, line="A"), device(2, line="B")])
    for d in range(3):
        set_state(cube, d, 0, slice(None), "running")
    cube.data[0, 0, F["energy_kwh"], 0:15] = 10 / 60     # 10 kW, quarter 0
    cube.data[1, 0, F["energy_kwh"], 15:30] = 10 / 60    # 10 kW, quarter 1
    cube.data[2, 0, F["energy_kwh"], 0:15] = 10 / 60     # 10 kW, quarter 0
    rs = analyse_energy(cube, EnergyConfig(FLAT_UTC))
    assert aggregate_energy(rs)["plant"].max_demand()[0] == pytest.approx(20, rel=1e-5)
    lines = aggregate_energy(rs, key=lambda r: r.device.line)
    assert lines["A"].max_demand()[0] == pytest.approx(10, rel=1e-5)
    assert lines["A"].kwh == pytest.approx(5, rel=1e-5)


def test_meter_reset_as_delivered_by_rollups():
    # The meter was replaced at minute 600 (reading 12345 -> 0.1): the rollup turns it into an
    # increase of 0.1 for that minute; a negative increase must never be subtracted.
    cube = empty_cube(1, 2)
    for k in range(2):
        constant(cube, 0, k, slice(None), "running", 6.0)   # 0.1 kWh per minute
    cube.data[0, 0, F["energy_kwh"], 600] = 0.1
    cube.data[0, 1, F["energy_kwh"], 600] = -12345.0
    t = analyse_energy(cube, EnergyConfig(FLAT_UTC))[0].totals
    assert t.kwh == pytest.approx(0.1 * 1440 * 2 - 0.1, rel=1e-5)
    assert t.kwh_by_day == pytest.approx([144, 143.9], rel=1e-5)


@pytest.mark.parametrize("raw", [
    {"prices_yuan_per_kwh": {"flat": 1.0}, "periods": {"peak": [["10:00", "12:00"]]}},
    {"prices_yuan_per_kwh": {"flat": 1.0}, "periods": {"flat": [["10", "12:00"]]}},
    {"periods": {}},
])
def test_bad_tariff_is_an_input_error(raw):
    with pytest.raises(VerificationInputError):
        Tariff.from_mapping(raw)


def _random_day(cube, d, k, rng, *, state="running"):
    set_state(cube, d, k, slice(None), state)
    # Irregular kWh per minute, so float sums would depend on their order.
    cube.data[d, k, F["energy_kwh"], :] = rng.uniform(0.0, 0.3, 1440).astype("float32")


def test_energy_and_cost_do_not_depend_on_summation_order():
    # The same minutes in another order within each day (one period all day, one state):
    # every kWh and fen figure must be identical, not just close.
    rng = np.random.default_rng(11)
    one_period = Tariff.from_mapping({"utc_offset_h": 0,
                                      "prices_yuan_per_kwh": {"flat": 0.6543}})
    a = empty_cube(1, 3)
    for k in range(3):
        _random_day(a, 0, k, rng)
    b = empty_cube(1, 3)
    b.data[:] = a.data[:, :, :, rng.permutation(1440)]
    b.present[:] = a.present
    ta = analyse_energy(a, EnergyConfig(one_period))[0].totals
    tb = analyse_energy(b, EnergyConfig(one_period))[0].totals
    assert ta.kwh > 0
    assert ta.kwh == tb.kwh
    assert ta.kwh_by_period == tb.kwh_by_period
    assert list(ta.kwh_by_day) == list(tb.kwh_by_day)
    assert ta.cost == tb.cost and ta.to_dict()["cost"] == tb.to_dict()["cost"]


def test_plant_totals_do_not_depend_on_device_order_or_chunking():
    rng = np.random.default_rng(12)
    cube = empty_cube(7, 2)
    for d in range(7):
        for k in range(2):
            _random_day(cube, d, k, rng, state=("running", "idle")[d % 2])
    whole = analyse_energy(cube, EnergyConfig(FLAT_UTC))
    halves = [analyse_energy(part, EnergyConfig(FLAT_UTC))
              for part in (_devices(cube, range(0, 3)), _devices(cube, range(3, 7)))]
    forward = aggregate_energy(whole)["plant"]
    backward = aggregate_energy([*halves[1][::-1], *halves[0][::-1]])["plant"]
    assert forward.kwh == backward.kwh
    assert forward.kwh_by_period == backward.kwh_by_period
    assert forward.kwh_by_state == backward.kwh_by_state
    assert forward.cost_by_period == backward.cost_by_period
    assert forward.idle_cost == backward.idle_cost
    assert forward.to_dict() == backward.to_dict()


def _devices(cube, rows):
    rows = list(rows)
    return RollupCube([cube.devices[r] for r in rows], cube.days, cube.data[rows].copy(),
                      cube.present[rows].copy())


def test_cost_is_integer_fen_rounded_half_up_per_period():
    # 60 minutes of 0.125 kWh (exact in float32) = 7.5 kWh at 0.63 yuan = 472.5 fen -> 473
    tariff = Tariff.from_mapping({"utc_offset_h": 0, "prices_yuan_per_kwh": {"flat": "0.63"}})
    cube = empty_cube(1, 1)
    set_state(cube, 0, 0, minutes(0, 1), "idle", energy_kwh=0.125)
    t = analyse_energy(cube, EnergyConfig(tariff))[0].totals
    assert t.fen_by_period == {"flat": 473} and t.idle_fen == 473
    d = t.to_dict()
    assert d["cost_fen"] == 473 and d["cost"] == 4.73
    assert d["savings_potential"]["cost_fen"] == 473


def test_broken_minutes_count_no_energy_and_are_counted():
    cube = empty_cube(1, 1)
    constant(cube, 0, 0, slice(None), "running", 6.0)   # 0.1 kWh per minute
    cube.data[0, 0, F["energy_kwh"], 0:4] = [np.nan, np.inf, -np.inf, 3e38]
    t = analyse_energy(cube, EnergyConfig(FLAT_UTC))[0].totals
    assert t.kwh == pytest.approx(0.1 * 1436, rel=1e-6)
    assert t.broken_minutes == 4 and t.to_dict()["broken_minutes"] == 4
    assert t.max_demand()[0] == pytest.approx(6.0, rel=1e-5)


@pytest.mark.parametrize("price,message", [
    ("0.6543219", "more than 6 decimals"), (-0.1, "non-negative"), (float("nan"), "non-negative"), (float("inf"), "non-negative"),
    (True, "non-negative"),
    ("abc", "not a number"),
])
def test_bad_price_is_an_input_error(price, message):
    with pytest.raises(VerificationInputError, match=message):
        Tariff.from_mapping({"prices_yuan_per_kwh": {"flat": price}})
