"""The outbox: what the store has to forward upstream (InfluxDB, a central MQTT broker...).

    outbox.register(store, "influx")               # a cursor for a sink, starting at the newest row
    rows = outbox.read(store, "influx", after_seq, max_items=5000)   # oldest first
    outbox.ack(store, "influx", upto_seq, sent=n)  # the sink has taken every row up to upto_seq
    outbox.stats(store)                            # per sink: backlog, oldest unsent age, counters

Rows are written in the transaction that stores what they cover, so "stored" and "queued" cannot
be told apart by a crash:
  * every stored sample batch (`enqueue_samples`, called by the store's sample write) is one row
    of kind SAMPLES holding the batch itself, compact JSON compressed with zlib;
  * every changed rollup day record is one row of kind ROLLUP holding the record as it was
    before (the trigger of migration 3 writes it, whichever code path stores the day). When it
    is sent, the minutes that differ from the current record go out, one point per
    device-minute with its current value: each change is sent, none is missed. While such a row
    waits and no sink has started reading it, further changes of that day add no row (it
    already covers them), so an outage of any length keeps one rollup row per device-day.
    A sink marks how far it is reading (`reading_seq`) before it reads, so a change made while
    a batch is in flight gets a row of its own.

Nothing is queued while no sink is registered: an edge box without an upstream keeps no outbox.

Delivery is at least once: a sink's cursor moves only after the sink has confirmed a batch, so a
crash in between sends that batch again. Upstream writes are idempotent (a point is identified by
measurement, tags and timestamp), so a resent batch overwrites itself instead of counting twice.

Size bound (`configure(store, max_samples=...)`): when the samples waiting (for the slowest
sink) exceed it, the oldest sample rows are dropped, whole batches, and counted in `dropped`.
Rollup rows are never dropped: they are small (one per device and minute at most) and they carry
what OEE and energy figures are computed from, so an outage longer than the bound still delivers
every minute's rollup. Rows every sink has taken are deleted as cursors move.
"""
from __future__ import annotations

import json
import sqlite3
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .model import NS_PER_S, Quality, Sample
from .rollup_codec import unpack_day
from .rollup_layout import FIELDS, empty_day

if TYPE_CHECKING:
    from .store import Store

SAMPLES = 0
ROLLUP = 1
NS_PER_MIN = 60 * NS_PER_S
NS_PER_DAY = 86_400 * NS_PER_S
DEFAULT_MAX_SAMPLES = 100_000_000
_ZLIB_LEVEL = 1
_QUALITY = (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD)


@dataclass(frozen=True, slots=True)
class RollupMinute:
    """One device-minute of a rollup day record, as sent upstream (fields: edge.rollup_layout)."""

    device_id: str
    ts_ns: int
    fields: dict[str, float]

    @property
    def signal(self) -> str:
        # Read by edge.deadletters when a sink refuses this point.
        return "rollup"


Item = Sample | RollupMinute


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    kind: int
    created_ns: int
    items: list[Item]


@dataclass(frozen=True, slots=True)
class SinkStats:
    name: str
    backlog: int                 # samples and rollup-day changes not yet sent to this sink
    oldest_unsent_age_s: float | None
    sent: int                    # points confirmed by the sink
    retried: int                 # attempts that failed and were tried again
    rejected: int                # points the sink refused (dead-lettered)
    connected: bool
    last_error: str | None
    queued: int                  # samples and rollup-day changes ever queued (all sinks)
    dropped: int                 # samples dropped by the size bound (all sinks)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


# ---------------------------------------------------------------------- writing (store side)
def enqueue_samples(conn: sqlite3.Connection, samples: Sequence[Sample]) -> None:
    """Queue a stored sample batch, inside the transaction that stores it (edge.store)."""
    state = conn.execute("SELECT max_samples, pending_samples FROM outbox_state "
                         "WHERE EXISTS (SELECT 1 FROM outbox_sinks)").fetchone()
    if state is None or not samples:
        return
    n = len(samples)
    conn.execute("INSERT INTO outbox (kind, created_ns, items, data) VALUES (?, ?, ?, ?)",
                 (SAMPLES, time.time_ns(), n, encode_samples(samples)))
    conn.execute("UPDATE outbox_state SET pending_samples = pending_samples + ?, "
                 "queued = queued + ?", (n, n))
    max_samples, pending = state
    if pending + n > max_samples:
        _drop_oldest(conn, pending + n - max_samples)


def _drop_oldest(conn: sqlite3.Connection, excess: int) -> None:
    dropped, last = 0, None
    for seq, items in conn.execute(
            "SELECT seq, items FROM outbox INDEXED BY outbox_samples WHERE kind = 0 ORDER BY seq"):
        if dropped >= excess:
            break
        dropped += items
        last = seq
    if last is None:
        return
    conn.execute("DELETE FROM outbox WHERE kind = 0 AND seq <= ?", (last,))
    conn.execute("UPDATE outbox_state SET pending_samples = pending_samples - ?, "
                 "dropped = dropped + ?", (dropped, dropped))


def encode_samples(samples: Sequence[Sample]) -> bytes:
    """A batch as zlib-compressed JSON: the (device, signal) pairs once, then columns."""
    pairs: dict[tuple[str, str], int] = {}
    idx, ts, values, quality = [], [], [], []
    for s in samples:
        key = (s.device_id, s.signal)
        i = pairs.get(key)
        if i is None:
            i = pairs[key] = len(pairs)
        idx.append(i)
        ts.append(s.ts_ns)
        values.append(s.value)
        quality.append(int(s.quality))
    # allow_nan: NaN is a stored value (a BAD reading) and must come back as NaN.
    doc = json.dumps([list(pairs), idx, ts, values, quality], separators=(",", ":"),
                     ensure_ascii=False, allow_nan=True)
    return zlib.compress(doc.encode("utf-8", "surrogatepass"), _ZLIB_LEVEL)


def decode_samples(blob: bytes) -> list[Sample]:
    pairs, idx, ts, values, quality = json.loads(zlib.decompress(blob).decode("utf-8", "surrogatepass"))
    return [Sample(pairs[i][0], pairs[i][1], t, v, _QUALITY[q])
            for i, t, v, q in zip(idx, ts, values, quality)]


def changed_minutes(device_id: str, day: str, new: np.ndarray, old: np.ndarray | None
                    ) -> list[RollupMinute]:
    """The minutes of a day record that differ between `old` (None: no record) and `new`."""
    before = empty_day() if old is None else old
    same = (new == before) | (np.isnan(new) & np.isnan(before))
    minutes = np.flatnonzero(~same.all(axis=0))
    day_ns = (np.datetime64(day, "D") - np.datetime64("1970-01-01", "D")).astype(np.int64) * NS_PER_DAY
    cols = new[:, minutes].astype(np.float64).T.tolist()
    return [RollupMinute(device_id, int(day_ns) + int(m) * NS_PER_MIN, dict(zip(FIELDS, vals)))
            for m, vals in zip(minutes.tolist(), cols)]


# ---------------------------------------------------------------------- sink side
def configure(store: "Store", *, max_samples: int = DEFAULT_MAX_SAMPLES) -> None:
    """Set the size bound (samples waiting, over all sinks); ValueError when it is not >= 1."""
    if max_samples < 1:
        raise ValueError(f"outbox max_samples must be >= 1, got {max_samples}")
    store._write(lambda c: c.execute("UPDATE outbox_state SET max_samples = ?", (int(max_samples),)))


def register(store: "Store", name: str) -> int:
    """Make sure sink `name` has a cursor; a new one starts after the newest row (history stored
    before a sink was configured is not replayed). Returns the cursor."""
    if not name:
        raise ValueError("sink name must not be empty")

    def apply(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT OR IGNORE INTO outbox_sinks (name, acked_seq, reading_seq) "
                     "SELECT ?, m, m FROM (SELECT coalesce(max(seq), 0) AS m FROM outbox)", (name,))
        return int(conn.execute("SELECT acked_seq FROM outbox_sinks WHERE name = ?",
                                (name,)).fetchone()[0])
    return store._write(apply)


def unregister(store: "Store", name: str) -> None:
    """Forget a sink (removed from the config): its backlog no longer holds rows back."""
    def apply(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM outbox_sinks WHERE name = ?", (name,))
        _trim(conn)
    store._write(apply)


def cursor(store: "Store", name: str) -> int:
    rows = store._read("SELECT acked_seq FROM outbox_sinks WHERE name = ?", (name,))
    if not rows:
        raise KeyError(f"no outbox cursor for sink {name!r}: register it first")
    return int(rows[0][0])


def read(store: "Store", name: str, after_seq: int, *, max_items: int,
         max_rows: int = 256) -> list[OutboxRow]:
    """Rows after `after_seq` for sink `name`, oldest first, decoded: whole rows while their
    items add up to at most `max_items` (always at least one row)."""
    # An idle forwarder polls: look first on the reader, so polling an empty outbox writes nothing.
    if not store._read("SELECT 1 FROM outbox WHERE seq > ? LIMIT 1", (int(after_seq),)):
        return []
    fence = store._write(_fence, name)
    rows = store._read("SELECT seq, kind, created_ns, items, data, device_id, day, "
                       "old_layout_version, old_data FROM outbox WHERE seq > ? AND seq <= ? "
                       "ORDER BY seq LIMIT ?", (int(after_seq), fence, int(max_rows)))
    out: list[OutboxRow] = []
    total = 0
    for seq, kind, created, n, data, device_id, day, old_lv, old_data in rows:
        if out and total + n > max_items:
            break
        if kind == SAMPLES:
            items: list[Item] = list(decode_samples(data))
        else:
            items = list(_rollup_changes(store, seq, device_id, day, old_lv, old_data))
        out.append(OutboxRow(seq, kind, created, items))
        total += n
    return out


def _fence(conn: sqlite3.Connection, name: str) -> int:
    """Mark every row so far as possibly being read by `name` (no later change merges into it)."""
    top = int(conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0])
    if conn.execute("UPDATE outbox_sinks SET reading_seq = ? WHERE name = ?", (top, name)).rowcount == 0:
        raise KeyError(f"no outbox cursor for sink {name!r}: register it first")
    return top


def _rollup_changes(store: "Store", seq: int, device_id: str, day: str, old_lv: int | None,
                    old_data: bytes | None) -> list[RollupMinute]:
    # Read after the fence: the current record includes every change the row stands for.
    where = f"outbox {seq} {device_id}/{day}"
    cur = store._read("SELECT layout_version, data FROM rollup_days WHERE device_id = ? AND day = ?",
                      (device_id, day))
    new = unpack_day(cur[0][1], cur[0][0], where) if cur else empty_day()
    old = unpack_day(old_data, old_lv, where) if old_data is not None else None
    return changed_minutes(device_id, day, new, old)


def ack(store: "Store", name: str, upto_seq: int, *, sent: int) -> None:
    """Sink `name` has taken every row up to `upto_seq` (`sent` points): move its cursor, and
    delete the rows every sink has taken."""
    def apply(conn: sqlite3.Connection) -> None:
        cur = conn.execute(
            "UPDATE outbox_sinks SET acked_seq = max(acked_seq, ?), sent = sent + ?, connected = 1, "
            "last_error = NULL WHERE name = ?", (int(upto_seq), int(sent), name))
        if cur.rowcount == 0:
            raise KeyError(f"no outbox cursor for sink {name!r}: register it first")
        _trim(conn)
    store._write(apply)


def _trim(conn: sqlite3.Connection) -> None:
    row = conn.execute("SELECT min(acked_seq) FROM outbox_sinks").fetchone()
    # No sink left: nothing will ever read the rows.
    upto = row[0] if row[0] is not None else conn.execute(
        "SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
    n = conn.execute("SELECT coalesce(sum(items), 0) FROM outbox WHERE kind = 0 AND seq <= ?",
                     (upto,)).fetchone()[0]
    conn.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))
    if n:
        conn.execute("UPDATE outbox_state SET pending_samples = pending_samples - ?", (n,))


def record_failure(store: "Store", name: str, error: str, *, connected: bool,
                   retried: int = 0, rejected: int = 0,
                   dead: Sequence[tuple[Any, str]] = ()) -> None:
    """Count a failed attempt of sink `name` (and dead-letter what it refused for good)."""
    from . import deadletters

    def apply(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE outbox_sinks SET retried = retried + ?, rejected = rejected + ?, "
                     "connected = ?, last_error = ?, last_error_ns = ? WHERE name = ?",
                     (int(retried), int(rejected), int(connected), error[:500], time.time_ns(), name))
        if dead:
            deadletters.add(conn, dead, time.time_ns(), store.dead_letter_rows)
    store._write(apply)


def stats(store: "Store", now_ns: int | None = None) -> list[SinkStats]:
    """Per registered sink: backlog, age of its oldest unsent row, counters."""
    now = time.time_ns() if now_ns is None else now_ns
    state = store._read("SELECT queued, dropped FROM outbox_state")
    queued, dropped = state[0] if state else (0, 0)
    out = []
    for name, acked, sent, retried, rejected, connected, last_error in store._read(
            "SELECT name, acked_seq, sent, retried, rejected, connected, last_error "
            "FROM outbox_sinks ORDER BY name"):
        backlog, oldest = store._read(
            "SELECT coalesce(sum(items), 0), min(created_ns) FROM outbox WHERE seq > ?", (acked,))[0]
        out.append(SinkStats(name, int(backlog), None if oldest is None else max(0.0, (now - oldest) / 1e9),
                             sent, retried, rejected, bool(connected), last_error, queued, dropped))
    return out
