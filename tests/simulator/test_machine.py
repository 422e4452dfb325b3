"""The pure machine model: determinism, counters, meter, codes and plausible totals."""
from __future__ import annotations

import dataclasses

import pytest

from simulator.calendar import UTC_OFFSET_S, local_day, weekday
from simulator.machine import (
    COUNTER_MODULO, REASONS, STATE_CODES, Machine, MachineSpec, make_specs,
)
from simulator.profiles import PROFILES

# A Tuesday 00:00 in factory local time, so calendars start on a working day.
T0 = 1_700_524_800.0 - UTC_OFFSET_S
DAY = 86400.0


def spec(profile: str = "cnc_mill", seed: int = 7, **kw) -> MachineSpec:
    base = MachineSpec(id="m01", name="test", protocol="opcua", line="L1",
                       serial="TST0001", profile=profile, seed=seed)
    return dataclasses.replace(base, **kw)


def test_t0_is_a_tuesday_midnight() -> None:
    assert weekday(local_day(T0)) == 1
    assert (T0 + UTC_OFFSET_S) % DAY == 0


def test_same_seed_same_history_regardless_of_query_order() -> None:
    a = Machine(spec(), T0)
    b = Machine(spec(), T0)
    # b is stepped forward first; its history must not depend on that.
    stepped = []
    for k in range(1, 200):
        t = T0 + k * 431.0
        b.advance(t)
        stepped.append((t, b.values()))
    hist_a = list(a.history(T0, T0 + DAY, 60))
    hist_b = list(b.history(T0, T0 + DAY, 60))
    assert hist_a == hist_b
    c = Machine(spec(), T0)
    for t, v in stepped:
        c.advance(t)
        assert c.values() == v


def test_different_seeds_differ() -> None:
    a = [v for _, v in Machine(spec(seed=1), T0).history(T0, T0 + DAY, 300)]
    b = [v for _, v in Machine(spec(seed=2), T0).history(T0, T0 + DAY, 300)]
    assert [x["count_total"] for x in a] != [x["count_total"] for x in b]
    assert [x["state"] for x in a] != [x["state"] for x in b]


def test_states_reasons_and_invariants_valid() -> None:
    for name in PROFILES:
        m = Machine(spec(profile=name, seed=11), T0)
        prev_energy = -1.0
        for _, v in m.history(T0, T0 + 3 * DAY, 120):
            assert STATE_CODES[v["state"]] == v["state_code"]
            assert v["reason_code"] in REASONS[v["state_code"]], v
            assert v["alarm"] == (v["state"] == "fault")
            assert v["power_kw"] >= 0
            assert v["energy_kwh"] >= prev_energy
            prev_energy = v["energy_kwh"]
            for key in ("count_total", "count_good", "count_reject"):
                assert 0 <= v[key] < COUNTER_MODULO
            assert (v["count_good"] + v["count_reject"]) % COUNTER_MODULO == v["count_total"]


def readings_with_wrap_or_reset(profile: str, days: float) -> tuple[int, int]:
    """Count counter decreases explained by a wrap and by a restart; fail on any other."""
    wraps = resets = 0
    for seed in range(1, 6):
        prev = None
        for _, v in Machine(spec(profile=profile, seed=seed), T0).history(T0, T0 + days * DAY, 60):
            if prev is not None and v["count_total"] < prev["count_total"]:
                if v["count_total"] == v["count_good"] == v["count_reject"] == 0:
                    resets += 1
                else:
                    # Only a wrap may decrease a counter without a restart: it must have been
                    # close to the top, and a minute of a fast line adds at most a few hundred.
                    assert prev["count_total"] > COUNTER_MODULO - 1000, (prev, v)
                    assert v["count_total"] < 1000, (prev, v)
                    wraps += 1
            prev = v
    return wraps, resets


def test_counters_wrap_at_65535() -> None:
    wraps, _ = readings_with_wrap_or_reset("packaging", 3)
    assert wraps > 0


def test_counters_reset_to_zero_after_fault_or_planned_stop() -> None:
    seen = 0
    for seed in range(1, 4):
        prev = None
        for _, v in Machine(spec(seed=seed), T0).history(T0, T0 + 3 * DAY, 60):
            if prev and prev["state"] in ("fault", "planned_stop") and v["state"] not in ("fault", "planned_stop"):
                assert (v["count_total"], v["count_good"], v["count_reject"]) == (0, 0, 0)
                seen += 1
            prev = v
    assert seen > 0


def test_two_days_plausible_totals() -> None:
    m = Machine(spec(profile="cnc_lathe", seed=3), T0)
    seconds = m.state_seconds(T0, T0 + 2 * DAY)
    assert sum(seconds.values()) == pytest.approx(2 * DAY)
    running_share = seconds["running"] / (2 * DAY)
    assert 0.3 < running_share < 0.9
    assert seconds["planned_stop"] > 6 * 3600  # two nights off
    hist = list(m.history(T0, T0 + 2 * DAY, 60))
    energy = hist[-1][1]["energy_kwh"] - hist[0][1]["energy_kwh"]
    assert energy > 0
    # Energy integrates power: it must sit between the standby and the running figures.
    p = PROFILES["cnc_lathe"]
    assert p.standby_kw * 0.5 * 48 < energy < p.run_kw * 1.2 * 48


@pytest.mark.parametrize("profile", ["cnc_mill", "injection_moulding", "laser_cutter"])
def test_parts_follow_the_ideal_cycle(profile: str) -> None:
    # ideal_cycle_s is per part, so OEE performance (parts x ideal / run time) stays <= 1
    # even for a machine making several parts per cycle.
    m = Machine(spec(profile=profile, seed=5), T0)
    hist = list(m.history(T0, T0 + 2 * DAY, 60))
    parts = 0
    for (_, a), (_, b) in zip(hist, hist[1:]):
        if b["count_total"] >= a["count_total"]:
            parts += b["count_total"] - a["count_total"]
    running_s = m.state_seconds(T0, T0 + 2 * DAY)["running"]
    ideal = running_s / PROFILES[profile].ideal_cycle_s
    assert 0.6 * ideal < parts <= ideal  # slower than ideal, never faster


def test_two_shift_nights_off_continuous_not() -> None:
    night = T0 + 2 * 3600  # 02:00 local on a Tuesday
    shift = Machine(spec(profile="cnc_mill"), T0)
    shift.advance(night)
    assert (shift.values()["state"], shift.values()["reason_code"]) == ("planned_stop", 53)
    cont = Machine(spec(profile="packaging"), T0)
    reasons = {v["reason_code"] for _, v in cont.history(T0, T0 + 7 * DAY, 600)}
    assert 53 not in reasons and 51 not in reasons


def test_bad_input_is_refused() -> None:
    m = Machine(spec(), T0)
    m.advance(T0 + 100)
    with pytest.raises(ValueError, match="before the present"):
        m.advance(T0 + 50)
    with pytest.raises(ValueError, match="before the machine model"):
        list(m.history(T0 - 10, T0 + 10))
    with pytest.raises(ValueError, match="unknown machine profile"):
        spec(profile="toaster")
    with pytest.raises(ValueError, match="protocol"):
        spec(protocol="bacnet")
    with pytest.raises(ValueError, match="serial"):
        spec(serial="X" * 17)


def test_make_specs_mix() -> None:
    specs = make_specs(30, seed=1)
    assert [s.id for s in specs][:3] == ["m01", "m02", "m03"]
    assert len({s.serial for s in specs}) == 30
    assert len({s.seed for s in specs}) == 30
    assert [s.protocol for s in specs[:6]] == ["opcua", "modbus", "mqtt"] * 2
    assert len({s.profile for s in specs}) == len(PROFILES)
    assert {s.line for s in specs} == {f"L{k}" for k in range(1, 5)}
    assert make_specs(30, seed=1) == specs
    assert make_specs(30, seed=2) != specs
    with pytest.raises(ValueError):
        make_specs(0)


def minute_power(s: MachineSpec, days: float = 3) -> list[float]:
    return [v["power_kw"] for t, v in Machine(s, T0).history(T0, T0 + days * DAY, 60) if t % 60 == 0]


def correlation(a: list[float], b: list[float]) -> float:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return cov / (va * vb) ** 0.5


def test_machines_of_one_profile_are_not_copies() -> None:
    # A shared shift calendar correlates two-shift machines, but their own faults, idle gaps,
    # speeds and power figures keep them well short of a copy (which correlates at 1.0).
    specs = [s for s in make_specs(30, seed=1) if s.profile == "cnc_lathe"]
    assert len(specs) >= 3
    series = {s.id: minute_power(s) for s in specs}
    assert correlation(series[specs[0].id], minute_power(specs[0])) > 0.9999
    for a in specs:
        for b in specs:
            if a.id < b.id:
                assert correlation(series[a.id], series[b.id]) < 0.95, (a.id, b.id)
