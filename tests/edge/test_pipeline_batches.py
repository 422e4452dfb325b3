"""Pipeline with a whole batch per put (no await per sample): what the bound means now, and the
guarantees that must survive it: order, contiguity of a producer's batch, futures retired in
order, a batch larger than the bound, cancelled and stopped producers."""
from __future__ import annotations

import asyncio
import random

import pytest

from edge.errors import RetryableSinkError
from edge.model import Sample
from edge.pipeline import Pipeline
from tests.edge.test_pipeline import ListSink


def batch(dev: str, n: int, start: int = 0) -> list[Sample]:
    return [Sample(dev, "a", start + i, float(i)) for i in range(n)]


async def until(cond, what: str, deadline_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def test_waiting_producers_keep_their_batches_whole_and_in_arrival_order():
    sink = ListSink()
    sink.gate = asyncio.Event()
    p = Pipeline([sink], queue_size=8, batch_size=4, flush_interval_s=0.01)
    await p.start()
    tasks = [asyncio.create_task(p.put_many(batch(f"d{k}", 6))) for k in range(4)]
    await until(lambda: p.stats().queue_depth == 8, "a full queue")
    sink.gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    await p.stop()
    # Samples of one put_many are never interleaved with another's, and puts keep their order.
    assert [s.device_id for s in sink.samples] == [f"d{k}" for k in range(4) for _ in range(6)]
    assert sink.samples == [s for k in range(4) for s in batch(f"d{k}", 6)]


async def test_a_batch_larger_than_the_whole_queue_goes_through_a_part_at_a_time():
    sink = ListSink()
    p = Pipeline([sink], queue_size=5, batch_size=3, flush_interval_s=0.01)
    await p.start()
    done = await asyncio.wait_for(p.put_many(batch("big", 23)), 10)
    await asyncio.wait_for(done, 10)
    assert sink.samples == batch("big", 23)
    assert max(len(b) for b in sink.batches) <= 3
    await p.stop()


async def test_a_stop_that_gives_up_fails_the_producers_still_waiting_for_room():
    sink = ListSink()
    sink.failures = [RetryableSinkError("down")] * 10_000
    p = Pipeline([sink], queue_size=5, batch_size=5, flush_interval_s=0.01)
    await p.start()
    first = await p.put_many(batch("a", 5))
    waiting = asyncio.create_task(p.put_many(batch("b", 20)))
    await until(lambda: p.stats().retries >= 1, "a failing write")
    dropped = await p.stop(timeout_s=0.2)
    # Before: the waiting producer was left blocked on the queue forever.
    with pytest.raises(RuntimeError, match="stopped"):
        await asyncio.wait_for(waiting, 10)
    assert first.cancelled() and dropped == p.stats().dropped >= 5


async def test_a_cancelled_waiting_producer_keeps_what_it_queued_and_holds_up_nobody():
    sink = ListSink()
    sink.gate = asyncio.Event()
    p = Pipeline([sink], queue_size=4, batch_size=2, flush_interval_s=0.01)
    await p.start()
    stuck = asyncio.create_task(p.put_many(batch("a", 10)))
    await until(lambda: p.stats().queue_depth == 4, "a full queue")
    behind = asyncio.create_task(p.put_many(batch("b", 3)))
    await asyncio.sleep(0)
    stuck.cancel()
    sink.gate.set()
    done = await asyncio.wait_for(behind, 10)
    await asyncio.wait_for(done, 10)
    await p.stop()
    got_a = [s for s in sink.samples if s.device_id == "a"]
    assert got_a == batch("a", len(got_a)) and 4 <= len(got_a) < 10
    assert [s for s in sink.samples if s.device_id == "b"] == batch("b", 3)
    st = p.stats()
    assert st.received == st.written == len(sink.samples)


@pytest.mark.parametrize("seed", range(12))
async def test_random_producers_sizes_and_failures_lose_nothing_and_retire_in_order(seed):
    rng = random.Random(seed)
    sink = ListSink()
    sink.failures = [RetryableSinkError("busy")] * rng.randint(0, 3)
    queue_size, batch_size = rng.randint(1, 30), rng.randint(1, 40)
    p = Pipeline([sink], queue_size=queue_size, batch_size=batch_size, flush_interval_s=0.005)
    await p.start()
    puts: dict[str, list[list[Sample]]] = {}
    retired_before: list[tuple[asyncio.Future[None], int]] = []

    async def producer(dev: str) -> None:
        ts = 0
        for _ in range(rng.randint(1, 8)):
            b = batch(dev, rng.choice([0, 1, 3, 10, 20, 45]), start=ts)
            ts += len(b)
            puts.setdefault(dev, []).append(b)
            fut = await p.put_many(b)
            fut.add_done_callback(lambda _f, n=ts, d=dev: retired_before.append(
                (_f, sum(1 for s in sink.samples if s.device_id == d) - n)))
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(*(producer(f"d{k}") for k in range(rng.randint(1, 5)))), 30)
    await p.stop()
    for dev, bs in puts.items():
        assert [s for s in sink.samples if s.device_id == dev] == [s for b in bs for s in b]
    # Each put's samples are contiguous in what the sink got.
    runs = [s.device_id for s in sink.samples]
    for dev, bs in puts.items():
        at = 0
        for b in bs:
            if b:
                i = sink.samples.index(b[0], at)
                assert sink.samples[i:i + len(b)] == b and runs[i:i + len(b)] == [dev] * len(b)
                at = i + len(b)
    # A future resolves only once its own samples (and everything before) reached the sink.
    assert all(extra >= 0 for _, extra in retired_before)
    st = p.stats()
    assert st.received == st.written == len(sink.samples) == sum(len(b) for bs in puts.values() for b in bs)
    assert st.queue_depth == 0


async def test_one_sample_passed_for_a_batch_is_refused_not_split_into_its_fields():
    async with Pipeline([ListSink()]) as p:
        with pytest.raises(TypeError, match="put\\(\\) takes one"):
            await p.put_many(Sample("m1", "a", 1, 1.0))  # type: ignore[arg-type]
        assert p.stats().received == 0
