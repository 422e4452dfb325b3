"""`shangyun run` as the process systemd runs: SIGTERM drains and exits cleanly; SIGKILL
leaves a store that reopens intact, and a restarted gateway carries on."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from edge.errors import StoreError
from edge.store import Store
from simulator.factory import Factory
from simulator.machine import MachineSpec
from tests.gateway.test_end_to_end import wait_for, write_config

pytestmark = pytest.mark.integration

MACHINE = MachineSpec(id="m01", name="Press", protocol="modbus", line="L1", serial="SN-P1",
                      profile="stamping_press", seed=9)


def start_gateway(config_path) -> subprocess.Popen:
    """The gateway's output goes to a file beside its config, not to a pipe: a pipe read only at
    the end fills after 64 KiB of log lines and then blocks the gateway mid-test."""
    log = open(f"{config_path}.log", "a", encoding="utf-8")
    try:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(config_path),
                                 "--status-interval", "1"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, text=True)
    finally:
        log.close()    # the child holds its own descriptor


def output_of(config_path) -> str:
    with open(f"{config_path}.log", encoding="utf-8", errors="replace") as f:
        return f.read()


def count(db: str) -> int:
    if not os.path.exists(db):
        return 0
    try:
        store = Store.open(db, readonly=True)
    except StoreError:
        # The gateway process has created the file but not yet committed its schema: not
        # ready, keep waiting (wait_for's deadline catches a store that never becomes one).
        return 0
    try:
        return store.sample_count(device_id="m01")
    finally:
        store.close()


async def test_sigterm_drains_and_exits_zero_sigkill_loses_no_stored_data(tmp_path):
    factory = Factory([MACHINE], broker=None)
    await factory.start()
    config = write_config(tmp_path, factory.manifest())
    db = str(tmp_path / "gw.db")
    try:
        proc = start_gateway(config)
        await wait_for(lambda: count(db) > 20, "samples from the gateway process")
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 60)
        err = output_of(config)
        assert proc.returncode == 0, err[-2000:]
        assert "gateway stopped" in err
        store = Store.open(db, readonly=True)
        try:
            assert [e.kind for e in store.events(kind="gateway_stopped")] == ["gateway_stopped"]
            assert not store.device("m01").online
            stored = store.sample_count(device_id="m01")
        finally:
            store.close()

        # SIGKILL: no chance to clean up. What was stored stays stored and readable.
        proc = start_gateway(config)
        await wait_for(lambda: count(db) > stored + 20, "samples after the restart")
        proc.kill()
        await asyncio.to_thread(proc.wait, 30)
        after_kill = count(db)
        assert after_kill > stored + 20

        proc = start_gateway(config)
        await wait_for(lambda: count(db) > after_kill + 10, "samples after restarting a killed gateway")
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 60)
        assert proc.returncode == 0, output_of(config)[-2000:]
        store = Store.open(db, readonly=True)
        try:
            assert len(store.events(kind="gateway_started")) == 3
            assert list(store.rollup_days(device_ids=["m01"]))  # rollups carried on
        finally:
            store.close()
    finally:
        await factory.stop()


async def test_a_second_gateway_on_the_same_store_is_refused(tmp_path):
    """Two gateways on one store fought over MQTT client ids and polled Modbus twice; the second
    now exits 2 at once, naming the first one's pid."""
    factory = Factory([MACHINE], broker=None)
    await factory.start()
    config = write_config(tmp_path, factory.manifest())
    db = str(tmp_path / "gw.db")
    first = start_gateway(config)
    try:
        await wait_for(lambda: count(db) > 0, "the first gateway storing")
        second = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "-c", str(config)],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"in use by another shangyun (pid {first.pid})" in second.stderr
        assert first.poll() is None            # the first one carries on
    finally:
        first.send_signal(signal.SIGTERM)
        await asyncio.to_thread(first.wait, 60)
        await factory.stop()
