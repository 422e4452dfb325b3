"""Schema migrations of the embedded store, registered in order (after sqlite-utils' migrations.py).

Each migration runs in its own transaction together with the bump of `PRAGMA user_version`, so a
crash mid-migration leaves the file at the previous version, never half-migrated. A file whose
version is newer than the newest migration here was written by a newer shangyun: opening it raises
StoreVersionError rather than guessing at a schema we do not know.

Never edit a migration that has shipped; append a new one.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Callable

from .errors import StoreError, StoreVersionError


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


MIGRATIONS: list[Migration] = []


def migration(version: int, name: str) -> Callable[[Callable[[sqlite3.Connection], None]], Callable]:
    """Register `fn` as the migration to schema `version` (must be the next number)."""

    def register(fn: Callable[[sqlite3.Connection], None]) -> Callable:
        expected = len(MIGRATIONS) + 1
        if version != expected:
            raise RuntimeError(f"migration {name!r} has version {version}, expected {expected}")
        MIGRATIONS.append(Migration(version, name, fn))
        return fn

    return register


def latest_version() -> int:
    return len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_version(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version; StoreVersionError when it is newer than this code understands."""
    version = schema_version(conn)
    if version > latest_version():
        raise StoreVersionError(
            f"{path}: store schema version {version} was written by a newer shangyun; this one "
            f"understands versions up to {latest_version()}. Upgrade shangyun to open it."
        )
    return version


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Apply every pending migration, each in a transaction; returns the final version.

    `conn` must be in autocommit mode (isolation_level=None) so the transactions here are ours.
    """
    version = check_version(conn, path)
    for m in MIGRATIONS[version:]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            m.apply(conn)
            conn.execute(f"PRAGMA user_version = {int(m.version)}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"{path}: migration {m.version} ({m.name}) failed: {exc}") from exc
    return latest_version()


@migration(1, "initial schema")
def _initial(conn: sqlite3.Connection) -> None:
    # A series is one (device, signal) pair; samples refer to it by integer id, which keeps rows
    # small and makes "this signal of this device in time order" a single primary-key range.
    conn.execute(
        """CREATE TABLE series (
               id INTEGER PRIMARY KEY,
               device_id TEXT NOT NULL,
               signal TEXT NOT NULL,
               UNIQUE (device_id, signal))"""
    )
    # `value` has no declared type on purpose: SQLite then keeps ints, floats and text exactly as
    # given (a typed column would coerce '12' to 12). `is_bool` restores bools, which sqlite3
    # stores as integers. Same series and timestamp = the same sample delivered again.
    conn.execute(
        """CREATE TABLE samples (
               series_id INTEGER NOT NULL,
               ts_ns INTEGER NOT NULL,
               value,
               is_bool INTEGER NOT NULL DEFAULT 0,
               quality INTEGER NOT NULL,
               PRIMARY KEY (series_id, ts_ns)) WITHOUT ROWID"""
    )
    # BAD samples are rare and mark where held values end; the roll-up looks up the last one
    # before a range, which this small partial index makes a single seek.
    conn.execute("CREATE INDEX samples_bad ON samples (series_id, ts_ns) WHERE quality = 2")
    conn.execute(
        """CREATE TABLE devices (
               id TEXT PRIMARY KEY,
               name TEXT NOT NULL,
               protocol TEXT NOT NULL,
               profile TEXT NOT NULL DEFAULT '',
               line TEXT NOT NULL DEFAULT '',
               location TEXT NOT NULL DEFAULT '',
               ideal_cycle_s REAL,
               identity TEXT,
               online INTEGER NOT NULL DEFAULT 0,
               last_seen_ns INTEGER,
               first_seen_ns INTEGER,
               last_error TEXT)"""
    )
    conn.execute(
        """CREATE TABLE events (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               ts_ns INTEGER NOT NULL,
               device_id TEXT,
               kind TEXT NOT NULL,
               data TEXT NOT NULL DEFAULT '{}')"""
    )
    conn.execute("CREATE INDEX events_by_ts ON events (ts_ns)")
    conn.execute("CREATE INDEX events_by_device ON events (device_id, ts_ns)")
    conn.execute("CREATE INDEX events_by_kind ON events (kind, ts_ns)")
    # One row per device and UTC day: the day array (edge.rollup_layout) as a zlib-compressed
    # float32 blob, plus totals so listings need not unpack blobs.
    conn.execute(
        """CREATE TABLE rollup_days (
               device_id TEXT NOT NULL,
               day TEXT NOT NULL,
               layout_version INTEGER NOT NULL,
               data BLOB NOT NULL,
               running_s REAL NOT NULL,
               count_total REAL NOT NULL,
               count_good REAL NOT NULL,
               energy_kwh REAL NOT NULL,
               samples INTEGER NOT NULL,
               minutes_with_data INTEGER NOT NULL,
               updated_ns INTEGER NOT NULL,
               PRIMARY KEY (device_id, day)) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX rollup_days_by_day ON rollup_days (day)")
    # Per device: minutes before `watermark_ns` are rolled up; `dirty_from_ns` is the earliest late
    # sample written below the watermark since; `max_ts_ns` the newest sample ever written;
    # raw samples before `pruned_before_ns` were deleted by retention.
    conn.execute(
        """CREATE TABLE rollup_progress (
               device_id TEXT PRIMARY KEY,
               watermark_ns INTEGER,
               dirty_from_ns INTEGER,
               max_ts_ns INTEGER NOT NULL,
               pruned_before_ns INTEGER)"""
    )


@migration(2, "dead letters")
def _dead_letters(conn: sqlite3.Connection) -> None:
    # Samples the store refused, as text (edge.deadletters). Bounded: the oldest rows are trimmed;
    # dead_letter_counts keeps the full tally per device and reason, so trimming never hides how
    # much was refused.
    conn.execute(
        """CREATE TABLE dead_letters (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               arrived_ns INTEGER NOT NULL,
               device_id TEXT NOT NULL,
               signal TEXT NOT NULL,
               ts TEXT NOT NULL,
               value TEXT NOT NULL,
               reason TEXT NOT NULL)"""
    )
    conn.execute("CREATE INDEX dead_letters_by_device ON dead_letters (device_id, id)")
    conn.execute(
        """CREATE TABLE dead_letter_counts (
               device_id TEXT NOT NULL,
               reason TEXT NOT NULL,
               count INTEGER NOT NULL,
               PRIMARY KEY (device_id, reason)) WITHOUT ROWID"""
    )


@migration(3, "outbox")
def _outbox(conn: sqlite3.Connection) -> None:
    # Store-and-forward upstream (edge.outbox). One row per stored sample batch (kind 0: the batch
    # itself, encoded, so the outbox does not depend on the raw-sample layout) or per changed
    # rollup day (kind 1: the day record as it was before the change; the minutes that differ
    # from the current record are what is sent).
    conn.execute(
        """CREATE TABLE outbox (
               seq INTEGER PRIMARY KEY AUTOINCREMENT,
               kind INTEGER NOT NULL,
               created_ns INTEGER NOT NULL,
               items INTEGER NOT NULL,
               data BLOB,
               device_id TEXT,
               day TEXT,
               old_layout_version INTEGER,
               old_data BLOB)"""
    )
    # The size bound drops the oldest sample rows: this keeps finding them a seek even when many
    # rollup rows (never dropped) are older.
    conn.execute("CREATE INDEX outbox_samples ON outbox (seq) WHERE kind = 0")
    conn.execute("CREATE INDEX outbox_rollups ON outbox (device_id, day, seq) WHERE kind = 1")
    # One cursor per sink: every row up to acked_seq is delivered to it; rows up to reading_seq
    # may be being sent. Counters are cumulative.
    conn.execute(
        """CREATE TABLE outbox_sinks (
               name TEXT PRIMARY KEY,
               acked_seq INTEGER NOT NULL,
               reading_seq INTEGER NOT NULL,
               sent INTEGER NOT NULL DEFAULT 0,
               retried INTEGER NOT NULL DEFAULT 0,
               rejected INTEGER NOT NULL DEFAULT 0,
               connected INTEGER NOT NULL DEFAULT 0,
               last_error TEXT,
               last_error_ns INTEGER)"""
    )
    conn.execute(
        """CREATE TABLE outbox_state (
               id INTEGER PRIMARY KEY CHECK (id = 0),
               max_samples INTEGER NOT NULL,
               pending_samples INTEGER NOT NULL DEFAULT 0,
               queued INTEGER NOT NULL DEFAULT 0,
               dropped INTEGER NOT NULL DEFAULT 0)"""
    )
    conn.execute("INSERT INTO outbox_state (id, max_samples) VALUES (0, 100000000)")
    # A changed rollup day is queued by the statement that writes it, whoever calls it, in the
    # same transaction; BEFORE INSERT still sees the record that INSERT OR REPLACE replaces. While
    # a row for the same day waits that no sink has started reading, it already covers this
    # change (the current record is read when sending): nothing is added, so an outage of any
    # length keeps at most one rollup row per device-day.
    conn.execute(
        """CREATE TRIGGER outbox_rollup_days BEFORE INSERT ON rollup_days
           WHEN EXISTS (SELECT 1 FROM outbox_sinks)
            AND NOT EXISTS (SELECT 1 FROM outbox INDEXED BY outbox_rollups
                             WHERE kind = 1 AND device_id = NEW.device_id AND day = NEW.day
                               AND seq > (SELECT max(reading_seq) FROM outbox_sinks))
           BEGIN
             INSERT INTO outbox (kind, created_ns, items, device_id, day, old_layout_version,
                                 old_data)
             VALUES (1, NEW.updated_ns, 1, NEW.device_id, NEW.day,
                     (SELECT layout_version FROM rollup_days
                       WHERE device_id = NEW.device_id AND day = NEW.day),
                     (SELECT data FROM rollup_days WHERE device_id = NEW.device_id AND day = NEW.day));
             UPDATE outbox_state SET queued = queued + 1;
           END"""
    )


@migration(4, "raw samples for append")
def _append_layout(conn: sqlite3.Connection) -> None:
    # The old `samples` table was clustered by (series, ts): every batch spread over N series
    # dirtied N pages, written once to the WAL and again by the checkpoint (~8.6 KB per value).
    # New writes append one blob per batch and device to `recent` (rowid order, no index);
    # Store.compact moves them into per-series `chunks` covering minutes (edge.store.samples).
    conn.execute(
        """CREATE TABLE recent (
               id INTEGER PRIMARY KEY,
               device_id TEXT NOT NULL,
               min_ts INTEGER NOT NULL,
               max_ts INTEGER NOT NULL,
               n INTEGER NOT NULL,
               data BLOB NOT NULL)"""
    )
    # start_ns/end_ns: first and last sample; n_good/n_bad let counts skip the blob.
    conn.execute(
        """CREATE TABLE chunks (
               id INTEGER PRIMARY KEY,
               series_id INTEGER NOT NULL,
               start_ns INTEGER NOT NULL,
               end_ns INTEGER NOT NULL,
               n INTEGER NOT NULL,
               n_good INTEGER NOT NULL,
               n_bad INTEGER NOT NULL,
               data BLOB NOT NULL)"""
    )
    conn.execute("CREATE UNIQUE INDEX chunks_by_series ON chunks (series_id, start_ns)")
    # BAD samples are rare and mark where held values end; the roll-up looks up the last one
    # before a range, which this small partial index makes a single seek.
    conn.execute("CREATE INDEX chunks_bad ON chunks (series_id, start_ns) WHERE n_bad > 0")
    # The newest chunked instant per series: a recent sample after it cannot replace a chunked one.
    conn.execute("ALTER TABLE series ADD COLUMN chunked_until_ns INTEGER")
    # The writer's wear counters (edge.store.wear), one row, for status in another process.
    conn.execute(
        """CREATE TABLE store_wear (
               id INTEGER PRIMARY KEY CHECK (id = 1),
               pid INTEGER NOT NULL,
               since_ns INTEGER NOT NULL,
               as_of_ns INTEGER NOT NULL,
               values_written INTEGER NOT NULL,
               bytes_written INTEGER)"""
    )
    _move_old_samples(conn)
    conn.execute("DROP TABLE samples")


def _move_old_samples(conn: sqlite3.Connection) -> None:
    """Old rows to chunks, one series at a time in key order (memory stays one series' worth
    per bucket, however large the store)."""
    # Imported here: edge.store imports this module.
    from .store import codec
    from .store import samples as raw

    cur = conn.execute("SELECT series_id, ts_ns, value, is_bool, quality FROM samples "
                       "ORDER BY series_id, ts_ns")
    sid: int | None = None
    ts: list[int] = []
    values: list = []
    quality: list[int] = []

    def flush() -> None:
        if sid is not None and ts:
            raw.write_chunks(conn, sid, codec.from_columns(ts, values, quality))
        ts.clear()
        values.clear()
        quality.clear()

    while rows := cur.fetchmany(10_000):
        for s, t, v, is_bool, q in rows:
            if s != sid or (ts and t // raw.BUCKET_NS != ts[0] // raw.BUCKET_NS):
                flush()
                sid = s
            ts.append(t)
            values.append(bool(v) if is_bool else float("nan") if v is None else v)
            quality.append(q)
    flush()


@migration(5, "evidence ledger")
def _ledger(conn: sqlite3.Connection) -> None:
    # The evidence ledger (edge.store.ledger; the contract is docs/evidence-ledger.md). Stores
    # from before it migrate with an empty ledger: what they hold has no capture record, and the
    # verifier says capture time is unknown for it.
    conn.execute(
        """CREATE TABLE ledger (
               seq INTEGER PRIMARY KEY,
               kind TEXT NOT NULL,
               captured_ns INTEGER NOT NULL,
               device_id TEXT,
               body TEXT NOT NULL,
               hash BLOB NOT NULL)"""
    )
    # The last device / identity / rollup entry of a device is looked up on every upsert_device,
    # set_identity and seal: a seek instead of a scan of the chain.
    conn.execute("CREATE INDEX ledger_by_device ON ledger (device_id, kind, seq)")
    conn.execute(
        """CREATE TABLE checkpoints (
               seq INTEGER PRIMARY KEY,
               head_seq INTEGER NOT NULL,
               head_hash BLOB NOT NULL,
               wall_ns INTEGER NOT NULL,
               body TEXT NOT NULL,
               signature BLOB NOT NULL,
               key_fingerprint TEXT NOT NULL)"""
    )
    conn.execute(
        """CREATE TABLE receipts (
               checkpoint_seq INTEGER NOT NULL,
               witness_fingerprint TEXT NOT NULL,
               body TEXT NOT NULL,
               signature BLOB NOT NULL,
               received_ns INTEGER NOT NULL,
               PRIMARY KEY (checkpoint_seq, witness_fingerprint))"""
    )
    conn.execute(
        """CREATE TABLE capture_stats (
               device_id TEXT NOT NULL,
               hour INTEGER NOT NULL,
               samples INTEGER NOT NULL,
               backfilled INTEGER NOT NULL,
               first_capture_ns INTEGER NOT NULL,
               last_capture_ns INTEGER NOT NULL,
               PRIMARY KEY (device_id, hour)) WITHOUT ROWID"""
    )
    conn.execute(
        """CREATE TABLE ledger_pending (
               id INTEGER PRIMARY KEY CHECK (id = 1),
               batches INTEGER,
               samples INTEGER,
               acc BLOB)"""
    )
    conn.execute("INSERT INTO ledger_pending (id, batches, samples, acc) VALUES (1, 0, 0, ?)",
                 (bytes(32),))
    conn.execute(
        """CREATE TABLE ledger_seals (
               device_id TEXT,
               day TEXT,
               sha256 BLOB,
               revision INTEGER,
               PRIMARY KEY (device_id, day))"""
    )


@migration(6, "payload dead letters")
def _payload_rejects(conn: sqlite3.Connection) -> None:
    # Payloads a connector refused before they became samples (edge.rejects): unreadable, too
    # large, for a device nobody configured, unmappable, bad Sparkplug. Bounded like
    # dead_letters: the oldest rows are trimmed, payload_reject_counts keeps the full tally.
    # `device_id` is '' when the payload could not be tied to a device.
    conn.execute(
        """CREATE TABLE payload_rejects (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               arrived_ns INTEGER NOT NULL,
               source TEXT NOT NULL,
               topic TEXT NOT NULL,
               device_id TEXT NOT NULL,
               reason TEXT NOT NULL,
               detail TEXT NOT NULL,
               size INTEGER NOT NULL,
               head BLOB NOT NULL)"""
    )
    conn.execute("CREATE INDEX payload_rejects_by_device ON payload_rejects (device_id, id)")
    conn.execute("CREATE INDEX payload_rejects_by_reason ON payload_rejects (reason, id)")
    conn.execute(
        """CREATE TABLE payload_reject_counts (
               device_id TEXT NOT NULL,
               reason TEXT NOT NULL,
               count INTEGER NOT NULL,
               PRIMARY KEY (device_id, reason)) WITHOUT ROWID"""
    )
