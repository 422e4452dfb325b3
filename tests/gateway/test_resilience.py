"""Failures inside the gateway itself must not leave a machine dark: a registry write that
fails is logged and collection goes on; a supervisor that dies is restarted."""
from __future__ import annotations

import sqlite3

import pytest

from gateway import runner
from gateway.config import load_config
from gateway.runner import Gateway
from simulator.factory import Factory
from simulator.machine import MachineSpec
from tests.gateway.test_end_to_end import wait_for, write_config

pytestmark = pytest.mark.integration

MODBUS = MachineSpec(id="m01", name="Press", protocol="modbus", line="L1", serial="SN-R1",
                     profile="stamping_press", seed=4)


async def _gateway(tmp_path):
    factory = Factory([MODBUS], broker=None)
    await factory.start()
    return factory, Gateway(load_config(write_config(tmp_path, factory.manifest())))


async def test_failing_registry_writes_do_not_stop_collection(tmp_path, monkeypatch):
    factory, gateway = await _gateway(tmp_path)

    def broken(*a, **kw):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(gateway.store, "set_status", broken)
    await gateway.start()
    try:
        await wait_for(lambda: gateway.store.sample_count(device_id="m01") > 20,
                       "samples despite the failing registry")
        assert gateway.observer.failures >= 1
    finally:
        monkeypatch.undo()
        await gateway.stop()
        await factory.stop()


async def test_a_crashed_supervisor_is_restarted(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "SUPERVISOR_RESTART_S", 0.1)
    factory, gateway = await _gateway(tmp_path)
    real_put_many = gateway.pipeline.put_many
    calls = {"n": 0}

    async def flaky_put_many(samples):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("a bug downstream")
        await real_put_many(samples)

    monkeypatch.setattr(gateway.pipeline, "put_many", flaky_put_many)
    await gateway.start()
    try:
        await wait_for(lambda: gateway.stats.supervisor_restarts >= 1, "the restart")
        before = gateway.store.sample_count(device_id="m01")
        await wait_for(lambda: gateway.store.sample_count(device_id="m01") > before + 10,
                       "samples after the restart")
    finally:
        await gateway.stop()
        await factory.stop()
