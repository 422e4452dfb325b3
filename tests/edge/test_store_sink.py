from __future__ import annotations

import sqlite3

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
        with pytest.raises(RetryableSinkError, match="locked"):
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
