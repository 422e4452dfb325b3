"""The append layout (edge.store.samples): what a write costs on disk, and that moving samples
from `recent` into chunks never changes what reads and counts see."""
from __future__ import annotations

import math
import sqlite3
import threading

import numpy as np
import pytest

from edge.errors import StoreError
from edge.model import Quality, Sample
from edge.store import Store

from .timebase import DAY0_NS, MIN_NS, S_NS

WAL_FRAME = 4096 + 24


def spread(series: int, ts_ns: int, value: int = 1) -> list[Sample]:
    """One sample for each of `series` series of 5 devices, like a batch from a busy gateway."""
    return [Sample(f"m{i % 5}", f"r{i // 5:03d}", ts_ns, value) for i in range(series)]


def test_a_batch_over_500_series_writes_a_few_pages_not_one_per_series(store_path):
    with Store.open(store_path) as s:
        # History first, so the store's b-trees are far larger than one batch.
        for k in range(200):
            s.write_samples(spread(500, DAY0_NS + k * S_NS, k))
        s.compact()
        s._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        s.write_samples(spread(500, DAY0_NS + 1000 * S_NS, 7))
        frames = (store_path.parent / (store_path.name + "-wal")).stat().st_size // WAL_FRAME
    # The clustered layout wrote ~500 pages here (one per series); appending writes a handful.
    assert frames <= 8


def test_a_redelivered_sample_is_one_sample_before_and_after_compaction(store):
    batch = [Sample("m1", "a", t, float(t)) for t in range(10)]
    store.write_samples(batch)
    store.compact()
    # Redelivered, with one value corrected: the latest write wins wherever the first one is.
    store.write_samples(batch[:5] + [Sample("m1", "a", 3, 33.0)])
    for _ in range(2):
        assert store.sample_count() == 10
        assert store.sample_count("m1", since_ns=3) == 7
        got = store.samples("m1", "a")
        assert [x.ts_ns for x in got] == list(range(10))
        assert got[3].value == 33.0
        assert list(store.sample_timestamps("m1")) == list(range(10))
        store.compact()


def test_late_samples_merge_into_the_chunk_they_fall_in(store):
    store.write_samples([Sample("m1", "a", t * S_NS, t) for t in range(0, 100, 2)])
    store.compact()
    store.write_samples([Sample("m1", "a", t * S_NS, -t) for t in range(1, 100, 2)]
                        + [Sample("m1", "a", 50 * S_NS, 500)])
    store.compact()
    got = store.samples("m1", "a")
    assert [x.ts_ns for x in got] == [t * S_NS for t in range(100)]
    assert got[50].value == 500 and got[51].value == -51 and got[52].value == 52
    assert store.sample_count() == 100
    # Chunks of a series never overlap: one chunk for this bucket, not two.
    assert store._r.execute("SELECT count(*) FROM chunks").fetchone()[0] == 1


def test_counts_by_quality_see_the_replacing_sample(store):
    store.write_samples([Sample("m1", "a", t, 1.0) for t in range(10)]
                        + [Sample("m1", "b", 5, 1.0, Quality.UNCERTAIN)])
    store.compact()
    store.write_samples([Sample("m1", "a", 4, 1.0, Quality.BAD), Sample("m1", "a", 10, 1.0)])
    for _ in range(2):
        assert store.sample_count(quality=Quality.GOOD) == 10
        assert store.sample_count(quality=Quality.BAD) == 1
        assert store.sample_count(quality=Quality.UNCERTAIN) == 1
        assert store.sample_count("m1", since_ns=4, quality=Quality.GOOD) == 6
        assert store.sample_count() == 12
        store.compact()
    with pytest.raises(ValueError, match="quality"):
        store.sample_count(quality=7)  # type: ignore[arg-type]


def test_latest_looks_in_recent_rows_and_chunks(store):
    store.write_samples([Sample("m1", "a", t, t) for t in range(5)])
    store.compact()
    assert store.latest("m1", "a").value == 4
    store.write_samples([Sample("m1", "a", 2, 20)])               # late: not the newest
    assert store.latest("m1", "a").value == 4
    store.write_samples([Sample("m1", "a", 4, 40, Quality.BAD)])  # replaces the newest
    assert (store.latest("m1", "a").value, store.latest("m1", "a").quality) == (40, Quality.BAD)
    assert store.latest("m1", "a", since_ns=5) is None
    store.write_samples([Sample("m1", "a", 9, 9)])
    assert store.latest("m1", "a", since_ns=5).ts_ns == 9
    assert store.latest("m1", "nope") is None
    # Only in recent rows, written out of order: the newest ts wins, then the newest write.
    store.write_samples([Sample("m2", "a", 50, 5), Sample("m2", "b", 60, 6)])
    store.write_samples([Sample("m2", "a", 30, 3)])
    assert store.latest("m2", "a").value == 5
    store.write_samples([Sample("m2", "a", 50, 55)])
    assert store.latest("m2", "a").value == 55
    assert store.latest("m2", "a", since_ns=51) is None


def test_values_keep_their_types_through_compaction(store):
    values = [1, 2.5, True, False, "running", float("nan"), -(2**63), 2**63 - 1, "温度", 0.0]
    store.write_samples([Sample("m1", "v", t, v) for t, v in enumerate(values)])
    store.compact()
    got = [x.value for x in store.samples("m1", "v")]
    assert [type(v) for v in got] == [type(v) for v in values]
    assert [v for v in got if not (isinstance(v, float) and math.isnan(v))] == \
           [v for v in values if not (isinstance(v, float) and math.isnan(v))]


def test_timestamps_with_a_limit_span_buckets_in_order(store):
    hour = 3600 * S_NS
    ts = [DAY0_NS + k * hour // 4 for k in range(40)]       # ten hours, four instants an hour
    store.write_samples([Sample("m1", sig, t, 1) for t in ts for sig in ("a", "b")])
    store.compact()
    store.write_samples([Sample("m1", "a", DAY0_NS - 1, 1)])   # older, still in recent
    got = store.sample_timestamps("m1", limit=6)
    assert list(got) == [DAY0_NS - 1] + ts[:5]
    assert list(store.sample_timestamps("m1", start_ns=ts[10], end_ns=ts[13])) == ts[10:13]


def test_prune_cuts_a_chunk_that_straddles_the_limit(store_path):
    with Store.open(store_path, retention_days=1) as s:
        s.write_samples([Sample("m1", "a", DAY0_NS + k * MIN_NS, k) for k in range(3 * 24 * 60)])
        now = DAY0_NS + 3 * 86_400 * S_NS
        s.roll_up(now)
        deleted = s.prune(now)
        left = s.samples("m1", "a")
        assert deleted + len(left) == 3 * 24 * 60
        assert deleted > 0 and all(x.ts_ns >= now - 86_400 * S_NS - 2 * MIN_NS for x in left)
        assert s.sample_count() == len(left)


def test_many_waiting_samples_compact_by_themselves(store):
    store.compact_after = 1000
    for k in range(5):
        store.write_samples([Sample("m1", f"s{i}", k, i) for i in range(300)])
    assert store.storage_info()["pending_values"] < 1000
    assert store.sample_count() == 1500


def test_write_hook_runs_in_the_samples_transaction(store):
    seen = []

    def hook(conn: sqlite3.Connection, rows: list) -> None:
        seen.extend(rows)
        conn.execute("CREATE TABLE IF NOT EXISTS outbox_probe (n)")
        conn.execute("INSERT INTO outbox_probe VALUES (?)", (len(rows),))
        if any(v == "boom" for _, _, v, _ in rows):
            raise RuntimeError("outbox refused")

    store.set_write_hook(hook)
    store.write_samples([Sample("m1", "a", 1, 1.5), Sample("m2", "b", 2, 2, Quality.BAD)])
    sid = dict(store._r.execute("SELECT signal, id FROM series"))
    assert sorted(seen) == [(sid["a"], 1, 1.5, 0), (sid["b"], 2, 2, 2)]
    with pytest.raises(RuntimeError, match="outbox refused"):
        store.write_samples([Sample("m1", "a", 3, 3.0), Sample("m1", "a", 4, "boom")])
    # The hook failing rolls the samples back with it, and the other way round.
    assert store.sample_count() == 2
    assert store._r.execute("SELECT sum(n) FROM outbox_probe").fetchone()[0] == 2


def test_storage_info_reports_size_and_wear_to_other_processes(store_path):
    with Store.open(store_path) as w, Store.open(store_path, readonly=True) as r:
        w.write_samples([Sample("m1", "a", t, t) for t in range(1000)])
        info = w.storage_info()
        assert (info["values_written"], info["pending_values"]) == (1000, 1000)
        assert info["file_bytes"] > 0 and info["wal_bytes"] > 0 and info["values_per_s"] > 0
        assert info["bytes_written"] is None or info["bytes_written"] >= 0
        # A reader (shangyun status) sees the writer's figures as of its last compaction.
        assert r.storage_info()["values_written"] is None
        assert r.storage_info()["pending_values"] == 1000
        w.compact()
        seen = r.storage_info()
        assert seen["values_written"] == 1000 and seen["pending_values"] == 0
        assert seen["writer_pid"] == w.storage_info()["writer_pid"]
        assert seen["since_ns"] <= seen["as_of_ns"]


def test_readers_never_see_samples_twice_or_not_at_all_while_compacting(store_path):
    with Store.open(store_path) as w, Store.open(store_path, readonly=True) as r:
        w.write_samples(spread(50, 0))
        stop = threading.Event()
        seen: list[int] = []

        def read() -> None:
            while not stop.is_set():
                seen.append(r.sample_count())

        t = threading.Thread(target=read)
        t.start()
        try:
            for k in range(1, 60):
                w.write_samples(spread(50, k))
                if k % 3 == 0:
                    w.compact()
        finally:
            stop.set()
            t.join(30)
    assert seen and all(n % 50 == 0 for n in seen)
    assert seen == sorted(seen) and seen[-1] <= 3000


def test_a_damaged_chunk_is_a_store_error_naming_it(store):
    store.write_samples([Sample("m1", "a", t, t) for t in range(10)])
    store.compact()
    with store._wlock:
        store._w.execute("UPDATE chunks SET data = x'0102'")
    with pytest.raises(StoreError, match="chunk .* cannot be read.*damaged"):
        store.samples("m1")


def test_rollup_reads_the_same_whether_samples_wait_in_recent_or_are_chunked(tmp_path):
    from edge.rollup_job import _read_columns

    first = [Sample("m1", "power_kw", DAY0_NS + k * S_NS, float(k)) for k in range(100)]
    first[40] = Sample("m1", "power_kw", first[40].ts_ns, 0.0, Quality.BAD)
    later = [Sample("m1", "power_kw", DAY0_NS + 90 * S_NS, 9.0, Quality.BAD),   # replaces one
             Sample("m1", "power_kw", DAY0_NS + 95 * S_NS, 7.0, Quality.UNCERTAIN),
             Sample("m1", "state", DAY0_NS + 97 * S_NS, "running")]
    columns = []
    for name, compact_all in (("split", False), ("chunked", True)):
        with Store.open(tmp_path / f"{name}.db") as s:
            s.write_samples(first)
            s.compact()
            s.write_samples(later)
            if compact_all:
                s.compact()
            with s._wlock:
                columns.append(_read_columns(s._w, "m1", DAY0_NS + 92 * S_NS, DAY0_NS + MIN_NS * 2))
    split, chunked = columns
    assert split.keys() == chunked.keys() == {"power_kw", "state"}
    for sig in split:
        a, b = split[sig], chunked[sig]
        assert a.ts_ns.tolist() == b.ts_ns.tolist()
        assert a.quality.tolist() == b.quality.tolist()
        assert np.array_equal(a.values, b.values, equal_nan=sig != "state")
    power = chunked["power_kw"]
    # History: the last BAD reading (90 s, the replacement, not the chunk's older BAD at 40 s)
    # and the last good one (91 s).
    assert power.ts_ns[:3].tolist() == [DAY0_NS + 90 * S_NS, DAY0_NS + 91 * S_NS, DAY0_NS + 92 * S_NS]
    assert power.quality[:2].tolist() == [2, 0]


def test_a_failing_automatic_compaction_does_not_fail_the_committed_write(store, caplog):
    store.compact_after = 100
    store.write_samples([Sample("m1", "a", t, t) for t in range(10)])
    with store._wlock:
        store._w.execute("UPDATE recent SET data = x'00'")      # the waiting row is damaged
    store.write_samples([Sample("m1", "a", t, t) for t in range(10, 200)])   # triggers it
    assert any("compacting recent samples failed" in r.getMessage() for r in caplog.records)
    assert store.storage_info()["pending_values"] == 200
    with pytest.raises(StoreError, match="recent row .* cannot be read"):
        store.compact()


def test_timestamps_at_the_ends_of_int64_are_stored_and_found(store):
    lo, hi = -(2**63), 2**63 - 1
    store.write_samples([Sample("m1", "a", lo, 1), Sample("m1", "a", 0, 2), Sample("m1", "a", hi, 3)])
    for _ in range(2):
        assert [x.ts_ns for x in store.samples("m1", "a")] == [lo, 0, hi]
        assert store.sample_count(since_ns=lo) == 3 and store.sample_count(since_ns=1) == 1
        assert list(store.sample_timestamps("m1", start_ns=lo)) == [lo, 0, hi]
        assert store.latest("m1", "a", since_ns=lo).ts_ns == hi
        store.write_samples([Sample("m1", "a", hi, 3)])            # redelivered at the very end
        assert store.sample_count() == 3
        store.compact()


def test_compaction_ends_under_a_steady_stream_of_writes(store):
    stop = threading.Event()

    def write() -> None:
        k = 0
        while not stop.is_set():
            store.write_samples(spread(20, k))
            k += 1

    for k in range(50):
        store.write_samples(spread(20, -1 - k))
    writer = threading.Thread(target=write)
    writer.start()
    try:
        done = threading.Event()
        compactor = threading.Thread(target=lambda: (store.compact(max_values=100), done.set()))
        compactor.start()
        # Liveness, not speed: the old "until recent is empty" loop never returned here.
        compactor.join(120)
        assert done.is_set()
    finally:
        stop.set()
        writer.join(30)
    store.compact()
    n = store.sample_count()
    assert n % 20 == 0 and n >= 1000 and store.storage_info()["pending_values"] == 0
