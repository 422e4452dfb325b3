"""The embedded store: one SQLite file in WAL mode holding raw samples (with retention), the device
registry, events and per-device-per-day rollups.

    from edge.store import Store, DeviceRecord, Event

    store = Store.open(path, retention_days=30)      # creates/migrates; raises StoreError
    store = Store.open(path, readonly=True)          # a reader in another process (verifier, status)

A read-write open takes the single-writer lock (edge.storelock: a second gateway on the same file
is refused, naming the first one's pid) and checks the file's integrity: a damaged store is
refused with how to recover it rather than silently losing what is written to it.

Concurrency: one writing process (the gateway); any number of read-only processes. Within the
gateway the store is called from worker threads (asyncio.to_thread, one writer at a time) and from
the event loop for small reads, so it holds two connections, each behind its own lock: writes go
through the writer connection, public reads through the reader connection. In WAL mode a read
never waits for a write transaction, so dashboard reads stay quick while a batch is written.

Raw samples are laid out for append (edge.store.samples): a write appends one compressed block
per device (edge.store.codec) to `recent`; `compact` (run by roll_up, prune, and by itself when
much waits) moves them into per-series chunks. A redelivered sample replaces the stored one in
every read and count. `set_write_hook` is where a module that must commit with the samples (the
outbox) joins their transaction.

The evidence ledger (edge.store.ledger) is written in the same transactions: every sample batch
folds into its pending digest and capture counts, upsert_device and set_identity add entries;
`checkpoint` seals final rollup days and signs the chain's head, `verify_ledger` recomputes it
(edge.store.ledger_facade holds those methods).

Timestamps are UTC nanoseconds; ranges are half-open [start_ns, end_ns). Rollup days are UTC.
Schema changes live in edge.migrations; connections and the file itself in edge.store.db; sample
validation in edge.store.validate.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .. import deadletters, migrations, outbox
from ..errors import StoreError
from ..model import NS_PER_S, DeviceSpec, IdentityEvidence, Quality, Sample
from ..records import DeadLetter, DeviceRecord, Event
from ..sqlite_errors import Condition, condition
from ..storelock import StoreLock
from ..rollup import RollupConfig
from ..rollup_codec import SUMMARY_COLUMNS, pack_day, summarize_day, unpack_day, upsert_day
from . import codec, db, ledger, registry, wear
from .deadletters_facade import DeadLetterFacade
from .ledger_facade import LedgerFacade
from . import samples as raw
from .validate import QUALITIES, check_sample, sample_problem

__all__ = ["Store", "DeviceRecord", "Event", "DeadLetter", "check_sample", "sample_problem"]

log = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * NS_PER_S
_PAGE_ROWS = 512          # rollup day rows fetched per lock hold when iterating
_IN_CHUNK = 500           # ids per IN (...) list
# Samples waiting in `recent` before write_samples compacts by itself (when nothing called
# compact): bounds what every read of recent samples has to decode.
COMPACT_AFTER = 1_000_000
# A write's devices: the earliest sample (late ones mark the rollup dirty) and the newest.
_upsert_progress = db.many_rows("""INSERT INTO rollup_progress (device_id, dirty_from_ns, max_ts_ns)
    VALUES {}
    ON CONFLICT (device_id) DO UPDATE SET
      dirty_from_ns = CASE
        WHEN watermark_ns IS NULL OR excluded.dirty_from_ns < watermark_ns
        THEN min(coalesce(dirty_from_ns, excluded.dirty_from_ns), excluded.dirty_from_ns)
        ELSE dirty_from_ns END,
      max_ts_ns = max(max_ts_ns, excluded.max_ts_ns)""", 3)
# (writer connection, [(series_id, ts_ns, value, quality)]) inside the samples transaction.
WriteHook = Callable[[sqlite3.Connection, list[tuple[int, int, Any, int]]], None]


class Store(LedgerFacade, DeadLetterFacade):
    """The embedded SQLite store. Build it with `Store.open`; close it with `close()`."""

    def __init__(self, path: str, writer: sqlite3.Connection | None, reader: sqlite3.Connection,
                 *, retention_days: float, rollup: RollupConfig, lock: StoreLock | None = None,
                 dead_letter_rows: int = deadletters.DEFAULT_KEEP,
                 ledger_state: ledger.Ledger | None = None) -> None:
        self.path = path
        self.readonly = writer is None
        self.retention_days = retention_days
        self.rollup_config = rollup
        self.dead_letter_rows = dead_letter_rows
        self._lock = lock
        self._w = writer
        self._r = reader
        self._wlock = threading.RLock()
        self._rlock = threading.RLock()
        self._series: dict[tuple[str, str], int] = {}
        self._series_key: dict[int, tuple[str, str]] = {}     # the inverse, for the ledger
        self._compact_lock = threading.Lock()     # compaction and prune rewrite chunks
        self._on_write: WriteHook | None = None
        self.compact_after = COMPACT_AFTER
        self._compact_backoff = 0        # samples pending when an automatic compaction failed
        self._pending = 0 if writer is None else raw.pending(writer)
        self._wear = wear.Meter()
        self._ledger = ledger_state

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, path: str | Path, *, retention_days: float = 30, readonly: bool = False,
             rollup: RollupConfig | None = None,
             dead_letter_rows: int = deadletters.DEFAULT_KEEP,
             backfill_after_s: float = ledger.DEFAULT_BACKFILL_AFTER_S,
             ledger_hooks: bool = True) -> "Store":
        """Open (creating and migrating if needed) the store at `path`.

        `readonly=True` opens an existing store for reading only (another process may be writing);
        it never migrates and takes no lock. A read-write open locks the store (StoreError when
        another shangyun has it open) and refuses a damaged file (StoreError saying how to
        recover). Raises StoreVersionError for a file written by a newer shangyun and StoreError
        for anything else that prevents opening. `dead_letter_rows` bounds the dead letters kept.
        Samples whose source time is more than `backfill_after_s` before their capture count as
        backfilled in the ledger's capture records. `ledger_hooks=False` writes no ledger at
        all: only for the benchmark that measures what the ledger costs.
        """
        if retention_days <= 0:
            raise ValueError(f"retention_days must be > 0, got {retention_days}")
        if dead_letter_rows < 1:
            raise ValueError(f"dead_letter_rows must be >= 1, got {dead_letter_rows}")
        p = str(path)
        cfg = rollup or RollupConfig()
        if readonly:
            reader = db.connect(p, readonly=True)
            try:
                version = migrations.check_version(reader, p)
                if version < migrations.latest_version():
                    raise StoreError(
                        f"{p}: store schema version {version} is older than this shangyun's "
                        f"({migrations.latest_version()}); open it read-write once to migrate"
                        if version else f"{p}: not a shangyun store yet (no schema; if a gateway "
                        "is starting on it, try again in a moment)")
            except BaseException:
                reader.close()
                raise
            return cls(p, None, reader, retention_days=retention_days, rollup=cfg)
        lock = StoreLock.acquire(p)
        writer: sqlite3.Connection | None = None
        try:
            writer = db.connect(p, readonly=False)
            db.check_integrity(writer, p)
            db.pragma(writer, p, "PRAGMA journal_mode=WAL")
            writer.execute("PRAGMA synchronous=NORMAL")
            migrations.migrate(writer, p)
            reader = db.connect(p, readonly=False)
        except sqlite3.DatabaseError as exc:
            if writer is not None:
                writer.close()
            lock.release()
            if condition(exc) is Condition.DAMAGED:
                raise StoreError(db.damaged(p, str(exc))) from exc
            raise StoreError(f"{p}: cannot open store: {exc}") from exc
        except BaseException:
            if writer is not None:
                writer.close()
            lock.release()
            raise
        state = ledger.Ledger(backfill_after_s=backfill_after_s) if ledger_hooks else None
        return cls(p, writer, reader, retention_days=retention_days, rollup=cfg, lock=lock,
                   dead_letter_rows=dead_letter_rows, ledger_state=state)

    def close(self) -> None:
        with self._wlock, self._rlock:
            if self._w is not None:
                self._w.close()
            self._r.close()
            if self._lock is not None:
                # Only after the connections are closed: the next writer may start at once.
                self._lock.release()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _writer(self) -> sqlite3.Connection:
        if self._w is None:
            raise StoreError(f"{self.path}: store was opened read-only")
        return self._w

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._rlock:
            try:
                return self._r.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: read failed: {exc}") from exc

    def _query(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """fn(reader connection, *args, **kwargs) under the read lock; sqlite errors as StoreError."""
        with self._rlock:
            try:
                return fn(self._r, *args, **kwargs)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: read failed: {exc}") from exc

    def _write(self, fn: Any, *args: Any) -> Any:
        """Run fn(conn, *args) in one IMMEDIATE transaction on the writer connection.

        sqlite3.Error is re-raised as is, so callers (the store sink) can tell "busy" from
        "disk full" from a broken row.
        """
        conn = self._writer()
        with self._wlock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args)
                # Inside the try: a COMMIT that fails (disk full) must not leave the
                # transaction open for the next write to stumble on.
                conn.execute("COMMIT")
            except BaseException:
                # SQLite rolls back by itself on some errors (SQLITE_FULL, SQLITE_IOERR...): a
                # ROLLBACK then fails and would hide the error that tells us what happened.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if self._ledger is not None:
                    self._ledger.forget()     # its cached head may be a rolled-back entry
                raise
            return result

    # ------------------------------------------------------------------ raw samples
    def write_samples(self, samples: Sequence[Sample], *, checked: bool = False) -> None:
        """Store a batch in one transaction and mark the devices' rollups dirty.

        Validates the whole batch first (ValueError naming the first bad sample; nothing written).
        A sample with the same device, signal and timestamp as a stored one replaces it, so a
        batch delivered twice is stored once. Bools read back as bools; NaN reads back as NaN.
        The batch is appended to `recent` (edge.store.samples); `compact` later moves it into
        per-series chunks, and does so by itself when much is waiting.
        `checked=True` skips that validation: the caller has checked each sample with sample_problem.
        """
        if not samples:
            return
        if not checked:
            for i, s in enumerate(samples):
                check_sample(i, s)
        try:
            self._write(self._insert_samples, samples)
        except BaseException:
            # Series rows inserted by a rolled-back transaction are gone: forget cached ids.
            self._series.clear()
            self._series_key.clear()
            raise
        self._wear.values_written += len(samples)
        self._pending += len(samples)
        if self._pending >= self.compact_after + self._compact_backoff:
            self._auto_compact()

    def _auto_compact(self) -> None:
        # The batch is committed: a compaction that fails must not make the caller think it was
        # not (the sink would split and dead-letter samples that are stored). Say so, try again
        # after as many samples more; reads stay right meanwhile, only slower.
        try:
            self.compact()
            self._compact_backoff = 0
        except (StoreError, sqlite3.Error) as exc:
            log.warning("%s: compacting recent samples failed, will retry: %s", self.path, exc)
            self._compact_backoff = self._pending

    def set_write_hook(self, hook: WriteHook | None) -> None:
        """Call `hook(conn, rows)` inside every samples write transaction, after the samples
        are inserted; rows are (series_id, ts_ns, value, quality). Whatever the hook writes
        on `conn` commits (or rolls back) together with the samples: the outbox's way in."""
        self._on_write = hook

    def _insert_samples(self, conn: sqlite3.Connection, samples: Sequence[Sample]) -> None:
        # Columns first, then C-level passes over them (map, zip, dict lookups, numpy): at
        # tens of thousands of samples a second every Python step per sample shows.
        devices = [s.device_id for s in samples]
        signals = [s.signal for s in samples]
        ts = [s.ts_ns for s in samples]
        values = [s.value for s in samples]
        quality = [s.quality for s in samples]
        keys = list(zip(devices, signals))
        sids = list(map(self._series.get, keys))
        if None in sids:
            sids = [self._series_id(conn, *key) if sid is None else sid
                    for sid, key in zip(sids, keys)]
        names, counts, (ts, values, quality, sids) = raw.store_order(devices, ts, values, quality, sids)
        block = codec.from_columns(ts, values, quality, sids)
        spans = raw.insert(conn, names, counts, block)
        # A sample below the watermark is late: the minutes from it on must be rolled up again.
        _upsert_progress(conn, [(d, lo, hi) for d, (lo, hi) in zip(names, spans)])
        # Same transaction: a sample is never stored without being queued for the sinks.
        outbox.enqueue_samples(conn, samples)
        # The batch's ledger record commits with it (edge.store.ledger).
        if self._ledger is not None:
            self._ledger.on_samples(conn, block, self._series_key, list(zip(names, counts)))
        # The one place another module sharing the samples' transaction hooks in.
        if self._on_write is not None:
            self._on_write(conn, list(zip(sids, ts, values, map(int, quality))))

    def _series_id(self, conn: sqlite3.Connection, device_id: str, signal: str) -> int:
        key = (device_id, signal)
        sid = self._series.get(key)
        if sid is None:
            conn.execute("INSERT OR IGNORE INTO series (device_id, signal) VALUES (?, ?)", key)
            sid = conn.execute("SELECT id FROM series WHERE device_id = ? AND signal = ?",
                               key).fetchone()[0]
            self._series[key] = sid
            self._series_key[sid] = key
        return sid

    def compact(self, max_values: int = 8_000_000) -> int:
        """Move recently written samples into per-series chunks; returns samples moved.

        Called by roll_up and prune, and by write_samples when `compact_after` samples wait;
        the gateway may call it on its own schedule too. Decoding and grouping run outside the
        writer lock; the move itself is one transaction, so readers see the samples either in
        `recent` or in chunks, never both or neither."""
        conn = self._writer()
        moved = 0
        with self._compact_lock:
            # Only what is there now: under a steady stream of writes "until recent is empty"
            # would never end.
            with self._wlock:
                last = conn.execute("SELECT max(id) FROM recent").fetchone()[0]
            while last is not None:
                with self._wlock:
                    step = raw.compact_read(conn, max_values, last)
                if step is None:
                    break
                moved += self._write(self._compact_step, raw.compact_build(step))
            with self._wlock:
                self._pending = raw.pending(conn)
        return moved

    def _compact_step(self, conn: sqlite3.Connection, step: raw.Compaction) -> int:
        moved = raw.compact_write(conn, step)
        wear.save(conn, self._wear)      # how status in another process sees the write rate
        return moved

    def samples(self, device_id: str, signal: str | None = None, start_ns: int | None = None,
                end_ns: int | None = None) -> list[Sample]:
        """Raw samples of a device (optionally one signal) in [start_ns, end_ns), in time order."""
        with self._snapshot() as conn:
            sids = self._device_series(conn, device_id, signal)
            rec = raw.split_by_series(raw.recent(conn, device_id, start_ns, end_ns))
            per = [(name, raw.series(conn, sid, rec.get(sid), start_ns, end_ns))
                   for sid, name in sids]
        out: list[tuple[int, str, Sample]] = []
        for name, b in per:
            q = b.quality.tolist()
            out.extend((t, name, Sample(device_id, name, t, v, Quality(qq)))
                       for t, v, qq in zip(b.ts.tolist(), b.values(), q))
        out.sort(key=lambda r: (r[0], r[1]))
        return [r[2] for r in out]

    def latest(self, device_id: str, signal: str, since_ns: int | None = None) -> Sample | None:
        """The newest sample of one signal (at or after `since_ns`), or None."""
        with self._snapshot() as conn:
            sids = self._device_series(conn, device_id, signal)
            if not sids:
                return None
            one = raw.latest(conn, device_id, sids[0][0], since_ns)
        if one is None:
            return None
        return Sample(device_id, signal, int(one.ts[0]), one.values()[0], Quality(int(one.quality[0])))

    def sample_timestamps(self, device_id: str, start_ns: int | None = None,
                          end_ns: int | None = None, limit: int = 10_000) -> np.ndarray:
        """Distinct sample instants of a device in [start_ns, end_ns), ascending, at most
        `limit`: what timing analysis needs, without building a Sample per row."""
        with self._snapshot() as conn:
            sids = [sid for sid, _ in self._device_series(conn, device_id, None)]
            rec = raw.recent(conn, device_id, start_ns, end_ns)
            return raw.timestamps(conn, sids, rec, start_ns, end_ns, int(limit)).astype(np.int64)

    def sample_count(self, device_id: str | None = None, since_ns: int | None = None,
                     quality: Quality | None = None) -> int:
        """Samples stored (of one device; at or after `since_ns`; of one quality), each
        (device, signal, ts) once however often it was delivered."""
        if quality is not None and quality not in QUALITIES:
            raise ValueError(f"quality must be an edge.model.Quality, got {quality!r}")
        with self._snapshot() as conn:
            return raw.count(conn, device_id, since_ns, None if quality is None else Quality(quality))

    def signals(self, device_id: str) -> list[str]:
        """Names of the signals a device has samples (or had, before retention) for."""
        return [r[0] for r in self._read(
            "SELECT signal FROM series WHERE device_id = ? ORDER BY signal", (device_id,))]

    def storage_info(self) -> dict[str, Any]:
        """Size and wear: file and WAL bytes, samples waiting for compaction, and the writer's
        values and bytes written since it opened the store with their rates (edge.store.wear).
        In the writing process the figures are live; a read-only process gets what the writer
        saved at its last compaction (`as_of_ns`), all None before the first."""
        if self._w is not None:
            figures = self._wear.figures()
            pending = self._pending
        else:
            with self._snapshot() as conn:
                figures = wear.load(conn)
                pending = raw.pending(conn)
        return {"path": self.path, "file_bytes": db.file_size(self.path),
                "wal_bytes": db.file_size(self.path + "-wal"), "pending_values": pending,
                **figures}

    def _device_series(self, conn: sqlite3.Connection, device_id: str,
                       signal: str | None) -> list[tuple[int, str]]:
        if signal is None:
            return conn.execute("SELECT id, signal FROM series WHERE device_id = ? ORDER BY signal",
                                (device_id,)).fetchall()
        return conn.execute("SELECT id, signal FROM series WHERE device_id = ? AND signal = ?",
                            (device_id, signal)).fetchall()

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """The reader connection inside one read transaction: a read of several statements
        sees one state of the file even while compaction moves samples from recent to chunks."""
        with self._rlock:
            conn = self._r
            try:
                conn.execute("BEGIN")
                yield conn
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: read failed: {exc}") from exc
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def prune(self, now_ns: int) -> int:
        """Delete raw samples older than `retention_days` before `now_ns`; returns rows deleted.

        Never deletes samples that are not rolled up yet (nor the last `stale_after_s` before the
        rolled-up watermark, which a later roll-up needs as carry-in): a store whose roll-ups
        stopped keeps its raw data rather than losing it silently, and late samples older than
        the retention limit (a replayed backlog) stay until a roll-up has taken them in.
        """
        cutoff = now_ns - int(self.retention_days * NS_PER_DAY)
        stale_ns = int(self.rollup_config.stale_after_s * NS_PER_S)
        conn = self._writer()
        self.compact()     # retention works on chunks; what waits in recent is the newest anyway
        with self._wlock:
            devices = [r[0] for r in conn.execute("SELECT device_id FROM rollup_progress")]
        # Each device's limit is read in the transaction that deletes: late samples written
        # between listing and deleting move dirty_from down, and must be seen.
        with self._compact_lock:
            return sum(self._write(raw.prune_device, d, cutoff, stale_ns) for d in devices)

    # ------------------------------------------------------------------ device registry
    def upsert_device(self, spec: DeviceSpec) -> None:
        """Register or update a device from its config; keeps its status and identity."""
        self._write(self._upsert_device, spec)

    def _upsert_device(self, conn: sqlite3.Connection, spec: DeviceSpec) -> None:
        registry.upsert_device(conn, spec)
        if self._ledger is not None:
            self._ledger.on_device(conn, spec)

    def devices(self) -> list[DeviceRecord]:
        return [registry.device_record(r) for r in self._read(registry.SELECT_DEVICES + " ORDER BY d.id")]

    def device(self, device_id: str) -> DeviceRecord | None:
        rows = self._read(registry.SELECT_DEVICES + " WHERE d.id = ?", (device_id,))
        return registry.device_record(rows[0]) if rows else None

    def set_status(self, device_id: str, *, online: bool, ts_ns: int, error: str | None = None) -> None:
        """Record that the device is (not) reachable at `ts_ns`; `error` None clears the last error."""
        self._write(registry.set_status, device_id, online, ts_ns, error)

    def set_identity(self, device_id: str, identity: IdentityEvidence, ts_ns: int) -> None:
        """Store the device's identity evidence (edge.store.registry.set_identity: a change of a
        known fingerprint is an `identity_changed` event in the same transaction)."""
        self._write(self._set_identity, device_id, identity, ts_ns)

    def _set_identity(self, conn: sqlite3.Connection, device_id: str, identity: IdentityEvidence,
                      ts_ns: int) -> None:
        changed_from = registry.set_identity(conn, device_id, identity, ts_ns)
        if self._ledger is not None:
            self._ledger.on_identity(conn, device_id, identity, changed_from)

    # ------------------------------------------------------------------ events
    def add_event(self, kind: str, ts_ns: int, device_id: str | None = None,
                  data: dict | None = None) -> None:
        """Record an event (onboarding, connect/disconnect, malformed payload...). `data` must be
        JSON-serialisable (TypeError otherwise, nothing written)."""
        payload = json.dumps(data or {}, sort_keys=True)
        self._write(lambda c: c.execute(
            "INSERT INTO events (ts_ns, device_id, kind, data) VALUES (?, ?, ?, ?)",
            (ts_ns, device_id, kind, payload)))

    def events(self, device_id: str | None = None, kind: str | None = None,
               since_ns: int | None = None, limit: int = 1000, *,
               newest_first: bool = False) -> list[Event]:
        """Events matching all given filters, oldest first (the first `limit` from `since_ns`);
        `newest_first=True` gives the latest `limit` events, newest first."""
        where, params = ["1"], []
        for col, val in (("device_id", device_id), ("kind", kind)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        if since_ns is not None:
            where.append("ts_ns >= ?")
            params.append(since_ns)
        order = "DESC" if newest_first else "ASC"
        rows = self._read(
            f"SELECT id, ts_ns, device_id, kind, data FROM events WHERE {' AND '.join(where)} "
            f"ORDER BY ts_ns {order}, id {order} LIMIT ?", [*params, int(limit)])
        return [Event(i, ts, d, k, json.loads(data)) for i, ts, d, k, data in rows]

    # ------------------------------------------------------------------ rollups
    def roll_up(self, until_ns: int) -> int:
        """Compute minute rollups (edge.rollup) from raw samples up to `until_ns` floored to the
        minute, for every device with new or late samples; returns device-days written.

        Works from each device's watermark (or from its earliest late sample), a UTC day at a
        time, committing progress after each day: a crash or restart loses at most one day of
        work, which the next call redoes.
        """
        from ..rollup_job import roll_up
        return roll_up(self, until_ns)

    def write_rollup_day(self, device_id: str, day: dt.date, arr: np.ndarray) -> None:
        """Store (replace) one device-day array of shape (len(FIELDS), 1440)."""
        blob = pack_day(arr)
        summary = summarize_day(np.asarray(arr))
        self._write(upsert_day, device_id, day, blob, summary)

    def rollup_day(self, device_id: str, day: dt.date) -> np.ndarray | None:
        rows = self._read("SELECT layout_version, data FROM rollup_days WHERE device_id = ? AND day = ?",
                          (device_id, day.isoformat()))
        if not rows:
            return None
        return unpack_day(rows[0][1], rows[0][0], f"{device_id}/{day}")

    def rollup_days(self, device_ids: Iterable[str] | None = None, day_from: dt.date | None = None,
                    day_to: dt.date | None = None) -> Iterator[tuple[str, dt.date, np.ndarray]]:
        """(device_id, day, array) for stored days in [day_from, day_to] (inclusive), ordered by
        device then day. Rows are fetched in pages, so memory stays bounded and writers are not
        held up by a long read."""
        for rows in self._rollup_pages("layout_version, data", device_ids, day_from, day_to):
            for device_id, day, version, blob in rows:
                yield device_id, dt.date.fromisoformat(day), unpack_day(blob, version, f"{device_id}/{day}")

    def rollup_day_summaries(self, device_ids: Iterable[str] | None = None,
                             day_from: dt.date | None = None,
                             day_to: dt.date | None = None) -> list[dict[str, Any]]:
        """Per device-day totals without unpacking blobs: dicts with device_id, day (date),
        layout_version, running_s, count_total, count_good, energy_kwh, samples,
        minutes_with_data."""
        cols = ("layout_version",) + SUMMARY_COLUMNS
        out = []
        for rows in self._rollup_pages(", ".join(cols), device_ids, day_from, day_to):
            for device_id, day, *vals in rows:
                out.append({"device_id": device_id, "day": dt.date.fromisoformat(day),
                            **dict(zip(cols, vals))})
        return out

    def _rollup_pages(self, columns: str, device_ids: Iterable[str] | None,
                      day_from: dt.date | None, day_to: dt.date | None) -> Iterator[list[tuple]]:
        groups: list[list[str] | None]
        if device_ids is None:
            groups = [None]
        else:
            ids = sorted(set(device_ids))
            groups = [ids[i:i + _IN_CHUNK] for i in range(0, len(ids), _IN_CHUNK)]
        for group in groups:
            where, params = [], []
            if group is not None:
                where.append(f"device_id IN ({','.join('?' * len(group))})")
                params.extend(group)
            if day_from is not None:
                where.append("day >= ?")
                params.append(day_from.isoformat())
            if day_to is not None:
                where.append("day <= ?")
                params.append(day_to.isoformat())
            after: tuple[str, str] | None = None
            while True:
                cond = list(where) + (["(device_id, day) > (?, ?)"] if after else [])
                sql = (f"SELECT device_id, day, {columns} FROM rollup_days "
                       f"WHERE {' AND '.join(cond) or '1'} ORDER BY device_id, day LIMIT {_PAGE_ROWS}")
                rows = self._read(sql, params + list(after or ()))
                if not rows:
                    break
                yield rows
                if len(rows) < _PAGE_ROWS:
                    break
                after = (rows[-1][0], rows[-1][1])
