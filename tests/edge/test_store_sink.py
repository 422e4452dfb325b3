from __future__ import annotations

import asyncio
import random
import sqlite3
import time

import pytest

from edge.errors import RejectedSinkError, RetryableSinkError
from edge.model import Sample
from edge.pipeline import Pipeline
from edge.sink import Sink
from edge.store import Store
from edge.store_sink import StoreSink


def test_store_sink_is_a_sink(store):
    assert isinstance(StoreSink(store), Sink)


async def test_pipeline_into_store(store):
    batch = [Sample(f"m{i % 3}", "a", i, float(i)) for i in range(1200)]
    async with Pipeline([StoreSink(store)], batch_size=500, flush_interval_s=0.01) as p:
        await p.put_many(batch)
    assert store.sample_count() == 1200
    assert p.stats().written == 1200


async def test_malformed_samples_are_rejected_alone(store):
    sink = StoreSink(store)
    batch = [Sample("m1", "a", 1, 1.0), Sample("m1", "a", 2, [1, 2]), Sample("m1", "a", 3, 3.0)]  # type: ignore[arg-type]
    with pytest.raises(RejectedSinkError, match="1 of 3") as info:
        await sink.write(batch)
    assert info.value.rejected_count == 1
    assert [s.ts_ns for s in store.samples("m1")] == [1, 3]


async def test_locked_database_is_retryable(store_path):
    store = Store.open(store_path)
    other = sqlite3.connect(store_path, timeout=0)
    try:
        store._w.execute("PRAGMA busy_timeout = 0")   # fail fast instead of waiting 5 s
        other.execute("BEGIN IMMEDIATE")               # another writer holds the lock
        with pytest.raises(RetryableSinkError,
                           match=f"store {store_path}: database locked by another process "
                                 r"\(1 samples waiting\)"):
            await StoreSink(store).write([Sample("m1", "a", 1, 1.0)])
        other.execute("ROLLBACK")
        await StoreSink(store).write([Sample("m1", "a", 1, 1.0)])
        assert store.sample_count() == 1
    finally:
        other.close()
        store.close()


async def test_other_sqlite_errors_are_rejected_with_context(store):
    store._w.execute("DROP TABLE rollup_progress")     # a broken store: every write fails
    with pytest.raises(RejectedSinkError, match="m1/a"):
        await StoreSink(store).write([Sample("m1", "a", 1, 1.0)])
    [letter] = store.dead_letters()
    assert "no such table: rollup_progress" in letter.reason


async def wait_until(cond, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_full_disk_is_retryable_says_what_to_do_and_loses_nothing(store, caplog):
    sink = StoreSink(store)
    await sink.write([Sample("m1", "a", 0, 0.0)])
    with store._wlock:
        pages = store._w.execute("PRAGMA page_count").fetchone()[0]
        # A real SQLITE_FULL: the database may not grow past the pages it has now.
        store._w.execute(f"PRAGMA max_page_count = {pages}")
    # Random values: a batch that compresses into the pages the store already has would fit.
    rng = random.Random(5)
    batch = [Sample(f"m{i % 4}", "a", 1 + i, rng.random()) for i in range(5_000)]
    with pytest.raises(RetryableSinkError,
                       match=f"store {store.path}: disk full \\(5000 samples waiting\\); free "
                             "space on the disk holding it"):
        await sink.write(batch)
    assert store.sample_count() == 1

    async with Pipeline([sink], batch_size=5_000, flush_interval_s=0.01) as p:
        done = await p.put_many(batch)
        await wait_until(lambda: p.stats().retries >= 2, "the pipeline retrying the full store")
        assert store.sample_count() == 1 and not done.done()
        with store._wlock:
            store._w.execute("PRAGMA max_page_count = 1073741823")    # space is back
        await done
        stats = p.stats()
    assert store.sample_count() == 5_001
    assert (stats.written, stats.rejected) == (5_000, 0)
    assert store.dead_letter_counts() == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("disk full" in w and "free space" in w for w in warnings)
