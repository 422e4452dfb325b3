"""The outbox in the store: queued in the samples' own transaction, bounded, one cursor per sink,
rollup changes queued once per change."""
from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from edge import outbox
from edge.model import NS_PER_S, Quality, Sample
from edge.outbox import SAMPLES, RollupMinute
from edge.store import Store

from .load import batch

T0 = 1_790_000_000 * NS_PER_S          # 2026-09-21, a minute boundary + 20 s
MIN = 60 * NS_PER_S


def _rows(store: Store) -> list[tuple[int, int, int]]:
    return store._read("SELECT seq, kind, items FROM outbox ORDER BY seq")


def test_nothing_is_queued_while_no_sink_is_registered(store: Store) -> None:
    store.write_samples(batch(["m00"], T0, 10))
    store.roll_up(T0 + 10 * MIN)
    assert _rows(store) == []


def test_samples_and_their_outbox_row_commit_or_roll_back_together(store: Store) -> None:
    outbox.register(store, "up")
    samples = batch(["m00", "m01"], T0, 5)

    def crash_after_insert(conn: sqlite3.Connection) -> None:
        store._insert_samples(conn, samples)
        raise RuntimeError("power cut after the samples were written")

    with pytest.raises(RuntimeError):
        store._write(crash_after_insert)
    store._series.clear()
    assert store.sample_count() == 0 and _rows(store) == []

    store.write_samples(samples)
    assert store.sample_count() == len(samples)
    ((_, kind, items),) = _rows(store)
    assert (kind, items) == (SAMPLES, len(samples))
    (row,) = outbox.read(store, "up", 0, max_items=10_000)
    assert row.items == samples


def test_encoding_keeps_every_value_type() -> None:
    samples = [Sample("d", "a", 1, 1.5, Quality.GOOD), Sample("d", "b", 2, True, Quality.UNCERTAIN),
               Sample("d", "c", 3, 2**62, Quality.GOOD), Sample("d", "e", 4, "运行 \"x\"", Quality.GOOD),
               Sample("d", "f", 5, float("nan"), Quality.BAD), Sample("d", "g", 6, "", Quality.BAD)]
    back = outbox.decode_samples(outbox.encode_samples(samples))
    assert [(s.device_id, s.signal, s.ts_ns, type(s.value), s.quality) for s in back] == \
           [(s.device_id, s.signal, s.ts_ns, type(s.value), s.quality) for s in samples]
    assert back[1].value is True and back[2].value == 2**62 and back[3].value == "运行 \"x\""
    assert math.isnan(back[4].value) and back[5].value == ""


def test_each_cursor_moves_alone_and_rows_go_when_every_sink_has_them(store: Store) -> None:
    outbox.register(store, "fast")
    outbox.register(store, "slow")
    n = 0
    for k in range(3):
        b = batch(["m00"], T0 + k * 10 * NS_PER_S, 4)
        store.write_samples(b)
        n += len(b)
    seqs = [r[0] for r in _rows(store)]
    sizes = [r[2] for r in _rows(store)]
    outbox.ack(store, "fast", seqs[-1], sent=n)
    assert len(_rows(store)) == 3                     # "slow" has not taken them yet
    by_name = {s.name: s for s in outbox.stats(store)}
    assert by_name["fast"].backlog == 0 and by_name["fast"].sent == n
    assert by_name["slow"].backlog == n and by_name["slow"].oldest_unsent_age_s is not None
    outbox.ack(store, "slow", seqs[1], sent=sizes[0] + sizes[1])
    assert [r[0] for r in _rows(store)] == seqs[2:]
    outbox.unregister(store, "slow")
    assert _rows(store) == []


def test_read_is_oldest_first_in_whole_rows_up_to_the_batch_size(store: Store) -> None:
    outbox.register(store, "up")
    for k in range(5):
        store.write_samples(batch(["m00"], T0 + k * 10 * NS_PER_S, 10))   # 22 items each
    first = outbox.read(store, "up", 0, max_items=50)
    assert [len(r.items) for r in first] == [22, 22]
    rest = outbox.read(store, "up", first[-1].seq, max_items=50)
    assert rest[0].seq > first[-1].seq and rest[0].items[0].ts_ns > first[-1].items[-1].ts_ns
    assert len(outbox.read(store, "up", 0, max_items=1)) == 1        # a row larger than the batch still goes


def test_size_bound_drops_oldest_samples_never_rollups_and_counts_them(store: Store) -> None:
    outbox.register(store, "up")
    outbox.configure(store, max_samples=50)
    store.write_samples(batch(["m00"], T0, 10))                   # 22 samples
    store.roll_up(T0 + 2 * MIN)
    rollup_rows = [r for r in _rows(store) if r[1] == outbox.ROLLUP]
    assert rollup_rows
    for k in range(1, 4):                                          # 66 more: 88 > 50
        store.write_samples(batch(["m00"], T0 + k * 10 * NS_PER_S + 3 * MIN, 10))
    rows = _rows(store)
    assert [r for r in rows if r[1] == outbox.ROLLUP] == rollup_rows
    kept = sum(r[2] for r in rows if r[1] == SAMPLES)
    (st,) = outbox.stats(store)
    assert kept <= 50 and st.dropped == 88 - kept and st.dropped > 0
    oldest_kept = outbox.read(store, "up", rollup_rows[-1][0], max_items=10**6)[0].items[0]
    assert oldest_kept.ts_ns >= T0 + 3 * MIN                      # the first batch went first
    with pytest.raises(ValueError):
        outbox.configure(store, max_samples=0)


def test_a_rollup_change_is_queued_once_with_only_the_minutes_that_changed(store: Store) -> None:
    outbox.register(store, "up")
    t = T0 // MIN * MIN
    store.write_samples([Sample("m00", "power_kw", t + i * 10 * NS_PER_S, 2.0, Quality.GOOD)
                         for i in range(18)])                      # three minutes
    store.roll_up(t + 3 * MIN)
    cur = max(r[0] for r in _rows(store))
    minutes = [i for r in outbox.read(store, "up", 0, max_items=10**6) for i in r.items
               if isinstance(i, RollupMinute)]
    assert sorted(m.ts_ns for m in minutes) == [t, t + MIN, t + 2 * MIN]
    assert all(m.fields["samples"] == 6 for m in minutes)

    store.roll_up(t + 3 * MIN)                                      # nothing changed
    assert max(r[0] for r in _rows(store)) == cur

    store.write_samples([Sample("m00", "power_kw", t + MIN + 5 * NS_PER_S, 4.0, Quality.GOOD)])
    store.roll_up(t + 3 * MIN)
    changed = [i for r in outbox.read(store, "up", cur, max_items=10**6) for i in r.items
               if isinstance(i, RollupMinute)]
    assert [m.ts_ns for m in changed] == [t + MIN]                 # a late sample: one minute again
    assert changed[0].fields["samples"] == 7


def test_changed_minutes_compares_with_no_record_as_empty() -> None:
    from edge.rollup_layout import F, empty_day
    new = empty_day()
    new[F["samples"], 5] = 3
    (m,) = outbox.changed_minutes("d", "2026-01-02", new, None)
    assert m.ts_ns == (np.datetime64("2026-01-02") - np.datetime64("1970-01-01")).astype(int) * 86_400 * NS_PER_S + 5 * MIN


def test_changes_to_an_unread_day_share_one_row_and_a_change_in_flight_gets_its_own(store: Store) -> None:
    outbox.register(store, "up")
    t = T0 // MIN * MIN

    def minute(i: int, value: float) -> None:
        store.write_samples([Sample("m00", "power_kw", t + i * MIN + k * 10 * NS_PER_S, value,
                                    Quality.GOOD) for k in range(6)])
        store.roll_up(t + (i + 1) * MIN)

    def rollup_rows() -> list[int]:
        return [r[0] for r in _rows(store) if r[1] == outbox.ROLLUP]

    for i in range(3):                                   # three roll-ups while nothing is read
        minute(i, 2.0 + i)
    (only,) = rollup_rows()
    sent = {m.ts_ns: m.fields for r in outbox.read(store, "up", 0, max_items=10**6) for m in r.items
            if isinstance(m, RollupMinute)}
    assert sorted(sent) == [t, t + MIN, t + 2 * MIN]
    assert sent[t + 2 * MIN]["power_mean_kw"] == pytest.approx(4.0)
    # That row has been read (a batch in flight): the next change must not hide in it.
    minute(3, 9.0)
    rows = rollup_rows()
    assert len(rows) == 2 and rows[0] == only
    outbox.ack(store, "up", only, sent=len(sent))
    later = [m for r in outbox.read(store, "up", only, max_items=10**6) for m in r.items
             if isinstance(m, RollupMinute)]
    assert t + 3 * MIN in {m.ts_ns for m in later}


def test_reading_an_empty_outbox_writes_nothing(store: Store) -> None:
    outbox.register(store, "up")
    before = store._w.total_changes
    assert outbox.read(store, "up", outbox.cursor(store, "up"), max_items=100) == []
    assert store._w.total_changes == before


def test_samples_that_cannot_be_queued_are_not_stored_either(store: Store) -> None:
    outbox.register(store, "up")
    # Queuing fails (as a full disk would fail it): the samples must not be committed without it.
    store._write(lambda c: c.execute(
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON main.outbox BEGIN SELECT RAISE(ABORT, 'no'); END"))
    with pytest.raises(sqlite3.IntegrityError):
        store.write_samples(batch(["m00"], T0, 3))
    assert store.sample_count() == 0


def test_a_rollup_day_that_cannot_be_queued_is_not_stored_either(store: Store) -> None:
    outbox.register(store, "up")
    store.write_samples(batch(["m00"], T0, 8))
    store._write(lambda c: c.execute(
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON main.outbox WHEN NEW.kind = 1 "
        "BEGIN SELECT RAISE(ABORT, 'no'); END"))
    with pytest.raises(sqlite3.IntegrityError):
        store.roll_up(T0 + 5 * MIN)
    assert list(store.rollup_days()) == []
