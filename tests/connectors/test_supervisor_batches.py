"""DeviceSupervisor's per-batch pass (one scan for the BAD count and the device clock check):
what it counts and what it hands on, through a real Pipeline, for batches as a source makes them
(plain lists, AckedBatch, empty ones)."""
from __future__ import annotations

import asyncio
import random
from typing import AsyncIterator

from connectors.base import AckedBatch
from connectors.supervisor import DeviceSupervisor
from edge.model import DeviceSpec, IdentityEvidence, Quality, Sample, SignalSpec, now_ns
from edge.pipeline import Pipeline
from tests.connectors.servers import eventually
from tests.connectors.test_supervisor import Recorder
from tests.edge.test_pipeline import ListSink

DEVICE = DeviceSpec("m1", "m1", "memory", {}, (SignalSpec("count_total"), SignalSpec("power_kw")))


class ListSource:
    """A source handing out prepared batches, then waiting (a device that went quiet)."""

    device = DEVICE

    def __init__(self, batches: list[list[Sample]]) -> None:
        self.batches = batches

    async def connect(self) -> IdentityEvidence:
        return IdentityEvidence("memory", endpoint="mem")

    async def samples(self) -> AsyncIterator[list[Sample]]:
        for b in self.batches:
            yield b
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None


async def test_counts_bad_and_implausible_samples_and_acks_only_once_stored():
    now = now_ns()
    acked: list[int] = []
    batches: list[list[Sample]] = [
        [Sample("m1", "count_total", now, 1), Sample("m1", "power_kw", now, "", Quality.BAD)],
        AckedBatch([Sample("m1", "count_total", 1000, 2)], ack=lambda: acked.append(1)),   # clock unset
        AckedBatch([], ack=lambda: acked.append(2)),            # a message that gave no sample
        [Sample("m1", "power_kw", 5, "", Quality.BAD), Sample("m1", "power_kw", now, 3.0)],
    ]
    sink = ListSink()
    sink.gate = asyncio.Event()
    rec = Recorder()
    async with Pipeline([sink], batch_size=100, flush_interval_s=0.01) as p:
        sup = DeviceSupervisor(ListSource(batches), p.put_many, rec, rng=random.Random(1))
        task = asyncio.create_task(sup.run())
        try:
            await eventually(lambda: p.stats().received == 5, what="all samples queued")
            assert acked == []                    # nothing durable yet
            sink.gate.set()
            await eventually(lambda: acked == [1, 2], what="acks after the write")
        finally:
            sup.request_stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert (sup.samples, sup.samples_bad, sup.timestamps_fixed) == (5, 2, 2)
    moved = [s for s in sink.samples if s.ts_ns not in (now,)]
    assert all(s.ts_ns >= now for s in moved)
    assert [s.quality for s in moved] == [Quality.UNCERTAIN, Quality.BAD]   # BAD stays BAD
    assert len(sink.samples) == 5
