"""A damaged store is refused at open with how to recover; damage found while writing is a
retryable condition that says the store is damaged, never a silent rejection of the data."""
from __future__ import annotations

import logging
import random
import sqlite3
from pathlib import Path

import pytest

from edge.errors import RetryableSinkError, StoreError
from edge.model import Sample
from edge.store import Store
from edge.store_sink import StoreSink
from edge.storelock import StoreLock

TAIL = 16 * 1024


def samples(n: int, t0: int = 0) -> list[Sample]:
    # Random values do not compress: the samples fill the file's tail, which the tests damage.
    rng = random.Random(t0)
    return [Sample(f"m{i % 5}", "a", t0 + i, rng.random()) for i in range(n)]


def write(store: Store, batch: list[Sample]) -> None:
    # In gateway-sized batches: the tail is then b-tree pages, whose damage SQLite notices.
    for i in range(0, len(batch), 200):
        store.write_samples(batch[i:i + 200])


def damage_tail(path: Path) -> None:
    size = path.stat().st_size
    assert size > 4 * TAIL          # the header page stays intact: only data pages are hit
    with open(path, "r+b") as f:
        f.seek(size - TAIL)
        f.write(random.Random(7).randbytes(TAIL))


def test_a_store_with_a_damaged_tail_is_refused_at_open(store_path):
    with Store.open(store_path) as s:
        write(s, samples(20_000))
    damage_tail(store_path)
    with pytest.raises(StoreError) as info:
        Store.open(store_path)
    text = str(info.value)
    assert str(store_path) in text and "is damaged" in text
    assert "malformed" in text                      # what SQLite said
    assert "move" in text and ".recover" in text    # how to recover
    StoreLock.acquire(str(store_path)).release()    # the refusal released the lock


def test_a_large_store_logs_that_the_check_may_take_long(store_path, caplog, monkeypatch):
    import edge.store.db
    Store.open(store_path).close()
    monkeypatch.setattr(edge.store.db, "SLOW_CHECK_BYTES", 0)
    with caplog.at_level(logging.INFO, logger="edge.store"):
        Store.open(store_path).close()
    assert [r.getMessage() for r in caplog.records if "checking store integrity" in r.getMessage()]


async def test_damage_found_while_writing_is_retryable_and_says_so(store_path):
    store = Store.open(store_path)
    try:
        write(store, samples(20_000))
        store._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        damage_tail(store_path)
        # Another connection's commit makes the store's connection drop its page cache, so the
        # next write reads the damaged pages from the file.
        other = sqlite3.connect(store_path, isolation_level=None)
        other.execute("INSERT INTO events (ts_ns, kind) VALUES (1, 'x')")
        other.close()
        with pytest.raises(RetryableSinkError, match="is damaged.*malformed.*.recover"):
            await StoreSink(store).write(samples(100, t0=20_000))
    finally:
        store.close()


def test_a_damaged_header_is_refused_with_the_same_advice(store_path):
    with Store.open(store_path) as s:
        s.write_samples(samples(100))
    with open(store_path, "r+b") as f:
        f.write(b"\0" * 100)           # the 100-byte header: SQLite no longer recognises the file
    with pytest.raises(StoreError, match="is damaged.*not a database.*.recover"):
        Store.open(store_path)
