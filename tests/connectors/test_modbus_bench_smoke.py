"""The Modbus benchmark's short mode as a smoke test (tests/bench/bench_modbus.py): 100 devices,
five endpoints of 20 unit ids each in other processes, both plans. Asserts correctness only,
never speed: every value is its own register's, none BAD, and every poll slot of the window is
either polled or counted as skipped."""
from __future__ import annotations

from tests.bench.bench_modbus import run


def test_short_benchmark_loses_nothing_and_accounts_for_every_poll():
    out = run(devices=100, units_per_server=20, processes=2, warmup_s=4, duration_s=10)
    for plan, r in out["results"].items():
        assert r["online_after_warmup"] == 100, plan
        assert r["connections"] == 5, plan           # one per endpoint, shared by its 20 units
        assert r["check"]["ok"], (plan, r["check"])
        assert r["polls"] > 0 and r["values_per_s"] > 0, plan
        # values counted = polls made x registers: no poll came back partial
        assert r["values"] == r["polls"] * out["registers_per_device"], plan
    assert out["results"]["coalesced"]["reads_per_poll"] == 1
    assert out["results"]["per_signal"]["reads_per_poll"] == 20
