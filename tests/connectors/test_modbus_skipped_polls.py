"""A poll that cannot keep its schedule is skipped and counted, never silently: a unit whose
answers take longer than its poll interval, polled by a real gateway, shows `skipped_polls` in
`shangyun status` (rows and text) and in the status file other processes read."""
from __future__ import annotations

import time
from typing import AsyncIterator

import pytest

from gateway.config import load_config
from gateway.runner import Gateway
from gateway.status import device_status, render
from tests.connectors.modbus_rig import RtuBus, SlowLine
from tests.connectors.servers import free_port
from tests.gateway.test_end_to_end import wait_for

INTERVAL_S = 0.1
ANSWER_S = 0.25     # each poll takes this long: at most every third poll can be made on time


@pytest.fixture
async def slow_line() -> AsyncIterator[SlowLine]:
    bus = RtuBus(free_port(), [1])
    await bus.start()
    line = SlowLine(bus.port, slow_s=ANSWER_S, late_s=ANSWER_S)
    await line.start()
    yield line
    await line.stop()
    await bus.stop()


def write_config(tmp_path, port: int):
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"""gateway:
  store: {{path: {tmp_path / 'gw.db'}}}
devices:
  - id: slow
    type: modbus
    connection: {{transport: rtu-over-tcp, host: 127.0.0.1, port: {port}, device_id: 1,
                 poll_interval_s: {INTERVAL_S}, timeout_s: 2, device_identification: false}}
    signals:
      - {{name: a, address: {{table: holding, offset: 0}}}}
""", encoding="utf-8")
    return cfg


async def test_overrunning_polls_are_counted_as_skipped_in_status(tmp_path, slow_line):
    gateway = Gateway(load_config(write_config(tmp_path, slow_line.port)))
    await gateway.start()
    try:
        started = time.monotonic()
        sup = gateway.supervisors["slow"]
        await wait_for(lambda: sup.counters.get("skipped_polls", 0) >= 5, "skipped polls counted")
        source = sup.source
        polls, skipped = sup.samples, source.skipped_polls
        # Every slot of the schedule is either polled or counted skipped (one slot may be in flight).
        slots = (time.monotonic() - started) / INTERVAL_S
        assert polls + skipped <= slots + 2
        assert skipped >= polls   # each poll takes ~2.5 intervals: at least one slot skipped per poll
        gateway.runtime.write()
        (row,) = [r for r in device_status(gateway.store)["devices"] if r["id"] == "slow"]
        assert row["skipped_polls"] >= skipped
        assert "skipped polls" in render(device_status(gateway.store))
    finally:
        await gateway.stop()
