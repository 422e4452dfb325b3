"""Storage stalls (issue 6): while `emit` blocks, a polled device is not polled; the time it
was not polled must be marked unknown (BAD at the moment the block began), not left to the
last state."""
import asyncio
import logging
import random
import time

from connectors.modbus.source import ModbusSource
from connectors.mqtt.source import MqttSource
from connectors.supervisor import BAD_VALUE, DeviceSupervisor
from edge.model import Quality, now_ns
from tests.connectors.devices import device
from tests.connectors.servers import eventually
from tests.connectors.test_supervisor import Recorder, modbus_device


class GatedRecorder(Recorder):
    """Records like Recorder, but `emit` waits while the gate is closed, as it does when the
    pipeline's queue is full behind a stalled store."""

    def __init__(self):
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.blocked_at_ns: int | None = None

    async def emit(self, batch):
        if not self.gate.is_set():
            self.blocked_at_ns = now_ns()
            await self.gate.wait()
        self.samples.extend(batch)

    async def block_for(self, seconds: float) -> int:
        """Close the gate until an emit has waited `seconds`; returns the release time (ns)."""
        self.blocked_at_ns = None
        self.gate.clear()
        await eventually(lambda: self.blocked_at_ns is not None, what="emit blocked")
        started = time.monotonic()
        await eventually(lambda: time.monotonic() - started >= seconds, what=f"{seconds}s of stall")
        released = now_ns()
        self.gate.set()
        return released


async def test_stalled_emit_marks_the_gap_bad_from_when_it_began(modbus_server, caplog):
    caplog.set_level(logging.INFO, logger="shangyun.connectors")
    modbus_server.holding[0] = 1
    rec = GatedRecorder()
    # poll every 0.05 s: threshold max(0.5, 3 x 0.05) = 0.5 s
    sup = DeviceSupervisor(ModbusSource(modbus_device(modbus_server.port)), rec.emit, rec,
                           stall_min_s=0.5, rng=random.Random(1))
    assert sup.stall_threshold_s == 0.5
    task = asyncio.create_task(sup.run())
    try:
        await eventually(lambda: len(rec.samples) >= 4, what="samples")
        # a short block (the store was briefly busy) is no gap
        await rec.block_for(0.0)
        mark = len(rec.samples)
        await eventually(lambda: len(rec.samples) >= mark + 6, what="samples after a short block")
        assert sup.stalls == 0 and not any(s.quality is Quality.BAD for s in rec.samples)

        good_before = max(s.ts_ns for s in rec.samples)
        released = await rec.block_for(1.0)
        blocked_at = rec.blocked_at_ns
        await eventually(lambda: sup.stalls == 1, what="the stall counted")
        await eventually(lambda: any(s.quality is Quality.GOOD and s.ts_ns > released for s in rec.samples),
                         what="polling again")
    finally:
        sup.request_stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    bad = [s for s in rec.samples if s.quality is Quality.BAD]
    assert sorted(s.signal for s in bad) == ["power_kw", "state"]
    assert {s.value for s in bad} == {BAD_VALUE} and len({s.ts_ns for s in bad}) == 1
    # stamped when the block began: after the last sample before it, before the device was
    # polled again, and well before the release
    bad_ts = bad[0].ts_ns
    assert good_before <= bad_ts <= blocked_at < released
    # the BAD marks come after the blocked batch and before the next poll's samples
    position = rec.samples.index(bad[0])
    assert all(s.ts_ns <= bad_ts for s in rec.samples[:position])
    assert all(s.ts_ns > bad_ts for s in rec.samples[position + len(bad):])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "device dev-1: not polled for" in warnings[0] and "(storage stalled)" in warnings[0]


def test_threshold_follows_the_poll_interval_and_mqtt_has_none():
    rec = Recorder()
    slow = ModbusSource(device("modbus", {"host": "127.0.0.1", "poll_interval_s": 10.0},
                               [{"name": "state", "address": {"table": "holding", "offset": 0}}]))
    assert DeviceSupervisor(slow, rec.emit, rec).stall_threshold_s == 30.0
    fast = ModbusSource(device("modbus", {"host": "127.0.0.1", "poll_interval_s": 0.5},
                               [{"name": "state", "address": {"table": "holding", "offset": 0}}]))
    assert DeviceSupervisor(fast, rec.emit, rec).stall_threshold_s == 5.0
    # the broker keeps an MQTT device's data while we are blocked: nothing goes unpolled
    mqtt = MqttSource(device("mqtt", {"host": "127.0.0.1", "topic": "t/m1"},
                             [{"name": "count_total", "address": "n"}]))
    assert DeviceSupervisor(mqtt, rec.emit, rec).stall_threshold_s is None
