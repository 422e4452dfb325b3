"""The collector schedule `shangyun run` sets (gateway/gc_policy.py)."""
from __future__ import annotations

import gc

from gateway import gc_policy


def test_apply_collects_the_young_generation_less_often_and_returns_the_schedule_it_replaced():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert gc_policy.apply() == (700, 10, 10)
        assert gc.get_threshold() == (gc_policy.YOUNG_THRESHOLD, 10, 10)
        assert gc.isenabled()   # rarer, not off: cyclic garbage is still collected
    finally:
        gc.set_threshold(*before)


def test_the_run_command_runs_the_gateway_under_it(monkeypatch):
    """`shangyun run` (gateway.cli._cmd_run) has set the schedule by the time the gateway
    starts: the loading and the gateway are stand-ins that record it."""
    import argparse

    from gateway import cli, config, runner

    seen = []

    class Started(Exception):
        pass

    class Gateway:
        def __init__(self, cfg):
            seen.append(gc.get_threshold()[0])
            raise Started

    monkeypatch.setattr(config, "load_config", lambda path: object())
    monkeypatch.setattr(runner, "Gateway", Gateway)
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        try:
            cli._cmd_run(argparse.Namespace(config="x.yaml", http=None, status_interval=60))
        except Started:
            pass
    finally:
        gc.set_threshold(*before)
    assert seen == [gc_policy.YOUNG_THRESHOLD]
