from __future__ import annotations

import asyncio
import logging
from typing import Sequence

import pytest

from edge.errors import RejectedSinkError, RetryableSinkError, ThrottledSinkError
from edge.model import Sample
from edge.pipeline import Pipeline
from edge.sink import Sink


class ListSink:
    """A sink that keeps what it was given and fails on demand."""

    def __init__(self, name: str = "list") -> None:
        self.name = name
        self.batches: list[list[Sample]] = []
        self.failures: list[Exception] = []     # raised in order, one per write attempt
        self.gate: asyncio.Event | None = None  # when set, write waits for it
        self.closed = False

    async def write(self, batch: Sequence[Sample]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append(list(batch))

    async def close(self) -> None:
        self.closed = True

    @property
    def samples(self) -> list[Sample]:
        return [s for b in self.batches for s in b]


def samples(n: int, start: int = 0) -> list[Sample]:
    return [Sample("m1", "a", start + i, float(i)) for i in range(n)]


def test_list_sink_is_a_sink():
    assert isinstance(ListSink(), Sink)


async def test_everything_put_reaches_every_sink_in_order_and_batched():
    a, b = ListSink("a"), ListSink("b")
    async with Pipeline([a, b], batch_size=100, flush_interval_s=0.05) as p:
        await p.put_many(samples(250))
        await p.put(Sample("m1", "a", 999, 1.0))
    assert a.samples == b.samples == samples(250) + [Sample("m1", "a", 999, 1.0)]
    assert max(len(x) for x in a.batches) <= 100
    st = p.stats()
    assert (st.received, st.written, st.rejected, st.queue_depth) == (251, 251, 0, 0)
    assert a.closed and b.closed


async def test_partial_batch_is_flushed_after_interval_without_stop():
    sink = ListSink()
    async with Pipeline([sink], batch_size=1000, flush_interval_s=0.05) as p:
        await p.put_many(samples(3))
        for _ in range(100):
            if sink.samples:
                break
            await asyncio.sleep(0.02)
        assert sink.samples == samples(3)


async def test_retryable_and_throttled_errors_keep_the_batch():
    sink = ListSink()
    sink.failures = [RetryableSinkError("busy"), ThrottledSinkError("slow down", retry_after_s=0.01)]
    async with Pipeline([sink], batch_size=10, flush_interval_s=0.01) as p:
        await p.put_many(samples(10))
    assert sink.samples == samples(10)
    st = p.stats()
    assert (st.retries, st.written, st.rejected) == (2, 10, 0)


async def test_unexpected_sink_exception_is_retried_not_lost():
    sink = ListSink()
    sink.failures = [RuntimeError("bug")]
    async with Pipeline([sink], batch_size=5, flush_interval_s=0.01) as p:
        await p.put_many(samples(5))
    assert sink.samples == samples(5)


async def test_rejected_batch_is_counted_logged_once_and_pipeline_goes_on(caplog):
    sink = ListSink("picky")
    sink.failures = [RejectedSinkError("no"), RejectedSinkError("no again")]
    with caplog.at_level(logging.ERROR, logger="edge.pipeline"):
        async with Pipeline([sink], batch_size=2, flush_interval_s=0.01) as p:
            for s in samples(6):      # one at a time so batches are 2, 2, 2 or smaller
                await p.put(s)
    st = p.stats()
    assert st.rejected + st.written == 6
    assert st.rejected >= 2 and len(sink.samples) == st.written
    assert len([r for r in caplog.records if "picky" in r.getMessage()]) == 1


async def test_rejected_count_from_sink_counts_only_those():
    sink = ListSink()
    err = RejectedSinkError("one bad")
    err.rejected_count = 1  # type: ignore[attr-defined]
    sink.failures = [err]
    async with Pipeline([sink], batch_size=10, flush_interval_s=0.01) as p:
        await p.put_many(samples(10))
    st = p.stats()
    assert (st.rejected, st.written) == (1, 9)


async def test_full_queue_makes_producers_wait():
    sink = ListSink()
    sink.gate = asyncio.Event()
    p = Pipeline([sink], queue_size=5, batch_size=2, flush_interval_s=0.01)
    await p.start()
    producer = asyncio.create_task(p.put_many(samples(20)))
    for _ in range(500):                       # until the queue is full (no timing assumption)
        if p.stats().queue_depth == 5:
            break
        await asyncio.sleep(0.01)
    for _ in range(50):                        # let every runnable task run; none can finish
        await asyncio.sleep(0)
    # The consumer holds one batch (2) in a blocked write; the queue holds at most 5.
    assert not producer.done()
    assert p.stats().queue_depth == 5
    assert p.stats().received <= 7
    sink.gate.set()
    await asyncio.wait_for(producer, 5)
    await p.stop()
    assert sink.samples == samples(20)


async def test_stop_with_timeout_gives_up_on_a_sink_that_stays_down(caplog):
    sink = ListSink()
    sink.failures = [RetryableSinkError("down")] * 1000
    p = Pipeline([sink], batch_size=10, flush_interval_s=0.01)
    await p.start()
    await p.put_many(samples(10))
    with caplog.at_level(logging.ERROR, logger="edge.pipeline"):
        await p.stop(timeout_s=0.2)
    assert any("10 samples not written" in r.getMessage() for r in caplog.records)


async def test_put_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="not running"):
        await Pipeline([ListSink()]).put(samples(1)[0])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        Pipeline([ListSink()], queue_size=0)


class PoisonSink(ListSink):
    """Raises an unclassified error (as SQLite's OverflowError would) for any batch holding a
    sample whose value is `poison`."""

    def __init__(self, poison: object) -> None:
        super().__init__("poisoned")
        self.poison = poison
        self.attempts = 0

    async def write(self, batch: Sequence[Sample]) -> None:
        self.attempts += 1
        if any(s.value == self.poison for s in batch):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        self.batches.append(list(batch))


async def test_one_poison_sample_is_isolated_rejected_and_the_rest_written():
    sink = PoisonSink(poison=-1.0)
    rejected: list[tuple[str, list[Sample], str]] = []
    good = samples(40)
    bad = Sample("m2", "count_total", 7, -1.0)
    async with Pipeline([sink], batch_size=100, flush_interval_s=0.01,
                        on_reject=lambda name, s, why: rejected.append((name, s, why))) as p:
        await p.put_many(good[:20] + [bad] + good[20:])
        await p.put_many(samples(5, start=100))      # later data is not held up
    assert sink.samples == good + samples(5, start=100)
    assert [(n, s) for n, s, _ in rejected] == [("poisoned", [bad])]
    assert "OverflowError" in rejected[0][2]
    st = p.stats()
    assert (st.written, st.rejected) == (45, 1)
    assert sink.attempts < 60          # bisection, not one attempt per sample forever


async def test_commit_future_resolves_only_after_every_sink_took_the_samples():
    a, b = ListSink("a"), ListSink("b")
    b.gate = asyncio.Event()
    p = Pipeline([a, b], batch_size=10, flush_interval_s=0.01)
    await p.start()
    first = await p.put_many(samples(3))
    second = await p.put_many(samples(3, start=10))
    await_count = 0
    while len(a.samples) < 6 and await_count < 500:
        await asyncio.sleep(0.01)
        await_count += 1
    assert a.samples and not first.done() and not second.done()   # b has not committed yet
    b.gate.set()
    await asyncio.wait_for(second, 5)
    assert first.done() and len(b.samples) == 6
    await p.stop()


async def test_stop_with_timeout_cancels_the_futures_of_dropped_samples():
    sink = ListSink()
    sink.failures = [RetryableSinkError("down")] * 1000
    p = Pipeline([sink], batch_size=10, flush_interval_s=0.01)
    await p.start()
    fut = await p.put_many(samples(10))
    assert await p.stop(timeout_s=0.2) == 10
    assert fut.cancelled()          # never acknowledged: a redelivering source sends them again
    assert p.stats().dropped == 10


async def test_a_failing_streak_is_one_warning_and_one_recovery_line(caplog):
    sink = ListSink("flaky")
    sink.failures = [RetryableSinkError("database is locked")] * 4
    with caplog.at_level(logging.INFO, logger="edge.pipeline"):
        async with Pipeline([sink], batch_size=10, flush_interval_s=0.01) as p:
            await p.put_many(samples(10))
    lines = [r for r in caplog.records if "flaky" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO]
    assert "database is locked" in lines[0].getMessage()
    assert sink.samples == samples(10)
