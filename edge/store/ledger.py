"""The evidence ledger: a SHA-256 chain over what the store captured, in capture order, with
signed checkpoints of its head (the contract is docs/evidence.md).

Entries are written by the store inside the transaction of the data they cover, so a crash
never leaves committed data without its ledger update:

- `device` when upsert_device registers a new or changed device;
- `identity` when set_identity sees evidence that differs from the last entry, and
  `identity_change` when a known fingerprint changed;
- raw samples are not one entry per batch (that would be most of a bundle): each batch folds its
  digest into the `ledger_pending` accumulator and counts itself in `capture_stats` per device and
  source hour (how many, how many backfilled, when captured). Each checkpoint turns the
  accumulator into one `samples` entry;
- `rollup` seals a device-day's stored rollup once it is final (see `Ledger.seal_due`), and
  seals it again, revision + 1, if it changes later.

`hash_n = sha256(hash_{n-1} + canon([seq, kind, captured_ns, device_id, body]))`, hash_0 = 32
zero bytes. A checkpoint signs the head with the gateway's Ed25519 key (edge.evidence_key).
`check` (Store.verify_ledger) recomputes all of it against the tables.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from ..model import NS_PER_S, DeviceSpec, IdentityEvidence
from . import db
from .batch_digest import SeriesHashes, digest_block
from .codec import Block

if TYPE_CHECKING:
    from ..evidence_key import EvidenceKey

GENESIS = bytes(32)
NS_PER_HOUR = 3_600 * NS_PER_S
NS_PER_DAY = 86_400 * NS_PER_S
KINDS = ("device", "identity", "identity_change", "samples", "rollup")
CHECKPOINT_FORMAT = 1
DEFAULT_BACKFILL_AFTER_S = 3_600.0
DEFAULT_SEAL_AFTER_S = 900.0
_EPOCH = dt.date(1970, 1, 1)

# json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False), built once.
_canon_text = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canon(x: Any) -> bytes:
    """The one byte encoding everything in the ledger is hashed and signed in."""
    return _canon_text(x).encode("utf-8")


def entry_hash(prev: bytes, seq: int, kind: str, captured_ns: int, device_id: str | None,
               body: dict[str, Any]) -> bytes:
    return hashlib.sha256(bytes(prev) + canon([seq, kind, captured_ns, device_id, body])).digest()


def fold(acc: bytes, digest: bytes) -> bytes:
    """The pending accumulator after one more batch: sha256(acc + batch_digest)."""
    return hashlib.sha256(bytes(acc) + bytes(digest)).digest()


def device_body(spec: DeviceSpec) -> dict[str, Any]:
    # Signal names sorted: reordering a config is not a change of the device.
    return {"spec": {"id": spec.id, "name": spec.name, "protocol": spec.protocol,
                     "line": spec.line, "location": spec.location, "profile": spec.profile,
                     "ideal_cycle_s": spec.ideal_cycle_s,
                     "signals": sorted(s.name for s in spec.signals)}}


def identity_body(identity: IdentityEvidence) -> dict[str, Any]:
    return {"fingerprint": identity.fingerprint(), "evidence": identity.to_dict()}


def day_of(iso: str) -> int:
    """Days since the epoch of a rollup day "YYYY-MM-DD"."""
    return (dt.date.fromisoformat(iso) - _EPOCH).days


# ---------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class CaptureHour:
    """What was captured for one device and one hour of source time."""
    samples: int
    backfilled: int
    first_capture_ns: int
    last_capture_ns: int


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    kind: str
    captured_ns: int
    device_id: str | None
    body: dict[str, Any]
    body_text: str          # as stored: canon(body), which the chain hashes
    hash: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    head_seq: int
    head_hash: bytes
    wall_ns: int
    body: dict[str, Any]
    body_text: str          # canon(body): these UTF-8 bytes are what is signed
    signature: bytes
    key_fingerprint: str

    @property
    def body_bytes(self) -> bytes:
        return self.body_text.encode("utf-8")

    @property
    def body_sha256(self) -> str:
        return hashlib.sha256(self.body_bytes).hexdigest()


@dataclass(frozen=True, slots=True)
class Receipt:
    checkpoint_seq: int
    witness_fingerprint: str
    body: dict[str, Any]
    body_text: str
    signature: bytes
    received_ns: int


# ---------------------------------------------------------------------- the writer side
class Ledger:
    """The writer's ledger state: the chain head, cached after the first read (one writer per
    store, so nobody else moves it), and what the first checkpoint after an open must rescan.

    Every method runs inside the caller's write transaction on the writer connection. When that
    transaction rolls back the caller must call `forget()`: the cached head would otherwise name
    an entry that was never committed."""

    def __init__(self, *, backfill_after_s: float = DEFAULT_BACKFILL_AFTER_S) -> None:
        if backfill_after_s < 0:
            raise ValueError(f"backfill_after_s must be >= 0, got {backfill_after_s}")
        self.backfill_after_ns = int(backfill_after_s * NS_PER_S)
        self._head: tuple[int, bytes] | None = None
        # Rollup rows updated at or after this wall-clock instant are compared with their seal
        # at the next checkpoint. 0 after an open: the first checkpoint compares every day, so
        # nothing changed while no gateway watched (or by a clock step back) goes unsealed.
        self._seal_scan_ns = 0
        self._last_scan_ns = 0
        self._series = SeriesHashes()

    def forget(self) -> None:
        self._head = None
        # A series id of a rolled-back write may come back naming another series.
        self._series.clear()
        # Seals of a rolled-back checkpoint are gone too: compare every day next time.
        self._seal_scan_ns = 0

    def head(self, conn: sqlite3.Connection) -> tuple[int, bytes]:
        if self._head is None:
            self._head = read_head(conn)
        return self._head

    def append(self, conn: sqlite3.Connection, kind: str, device_id: str | None,
               body: dict[str, Any], captured_ns: int | None = None) -> Entry:
        if kind not in KINDS:
            raise ValueError(f"unknown ledger entry kind {kind!r}")
        seq, prev = self.head(conn)
        seq += 1
        captured = time.time_ns() if captured_ns is None else int(captured_ns)
        text = canon(body).decode("utf-8")
        h = entry_hash(prev, seq, kind, captured, device_id, body)
        conn.execute("INSERT INTO ledger (seq, kind, captured_ns, device_id, body, hash) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (seq, kind, captured, device_id, text, h))
        self._head = (seq, h)
        return Entry(seq, kind, captured, device_id, body, text, h)

    # -------------------------------------------------------------- hooks of the store
    def on_samples(self, conn: sqlite3.Connection, block: Block,
                   key_of: Mapping[int, tuple[str, str]],
                   devices: Sequence[tuple[str, int]]) -> None:
        """A committed batch, as the block the store appended for it (edge.store.samples.insert):
        `key_of` names its series ids, `devices` its runs of samples per device, (device_id,
        how many) in block order. Folds its digest into the pending accumulator and counts it
        per device and source hour (one UPDATE and one executemany UPSERT)."""
        captured = time.time_ns()
        digest = digest_block(block, key_of, self._series)
        pending = conn.execute("SELECT acc FROM ledger_pending WHERE id = 1").fetchone()
        conn.execute("UPDATE ledger_pending SET batches = batches + 1, samples = samples + ?, "
                     "acc = ? WHERE id = 1", (len(block), fold(pending[0], digest)))
        cutoff = captured - self.backfill_after_ns
        counts = [n for _, n in devices]
        ends = np.cumsum(counts)
        starts = ends - counts
        lo = np.minimum.reduceat(block.ts, starts)
        hi = np.maximum.reduceat(block.ts, starts)
        hour = lo // NS_PER_HOUR
        # The usual batch: a few seconds of each device, all live or all backfilled.
        usual = ((hour == hi // NS_PER_HOUR) & ((hi < cutoff) | (lo >= cutoff))).tolist()
        backfilled = (hi < cutoff).tolist()
        stats = []
        for (device_id, n), first_hour, one_hour, back, start, end in zip(
                devices, hour.tolist(), usual, backfilled, starts.tolist(), ends.tolist()):
            if one_hour:
                stats.append((device_id, first_hour, n, n if back else 0, captured, captured))
            else:
                stats.extend((device_id, h, k, b, captured, captured)
                             for h, k, b in _hour_counts(block.ts[start:end].tolist(), cutoff))
        _upsert_capture_stats(conn, stats)

    def on_device(self, conn: sqlite3.Connection, spec: DeviceSpec) -> None:
        body = device_body(spec)
        if _last_body(conn, spec.id, "device") != body:
            self.append(conn, "device", spec.id, body)

    def on_identity(self, conn: sqlite3.Connection, device_id: str, identity: IdentityEvidence,
                    changed_from: str | None) -> None:
        """`changed_from`: the known fingerprint this evidence replaces (the registry's rule,
        edge.store.registry.set_identity), None when it is not a change."""
        body = identity_body(identity)
        if _last_body(conn, device_id, "identity") != body:
            self.append(conn, "identity", device_id, body)
        if changed_from is not None:
            self.append(conn, "identity_change", device_id,
                        {"old": changed_from, "new": identity.fingerprint()})

    # -------------------------------------------------------------- checkpoints
    def flush_pending(self, conn: sqlite3.Connection, wall_ns: int) -> Entry | None:
        batches, samples, acc = conn.execute(
            "SELECT batches, samples, acc FROM ledger_pending WHERE id = 1").fetchone()
        if not batches:
            return None
        entry = self.append(conn, "samples", None,
                            {"batches": batches, "samples": samples, "acc": bytes(acc).hex()},
                            wall_ns)
        conn.execute("UPDATE ledger_pending SET batches = 0, samples = 0, acc = ? WHERE id = 1",
                     (GENESIS,))
        return entry

    def seal_due(self, conn: sqlite3.Connection, wall_ns: int,
                 seal_after_s: float = DEFAULT_SEAL_AFTER_S) -> list[Entry]:
        """Seal every device-day whose rollup is final and not sealed as it is stored now.

        Final: the roll-up has passed the day's end (watermark at or after it, no late sample
        waiting before it) and the day ended more than `seal_after_s` before `wall_ns`. A day
        whose stored rollup differs from its seal (a late sample rolled in) is sealed again with
        the next revision."""
        scan_started = time.time_ns()
        if scan_started < self._last_scan_ns:
            # The clock stepped back: rollups updated since carry earlier times than the last
            # scan; compare every day once rather than miss them.
            self._seal_scan_ns = 0
        self._last_scan_ns = scan_started
        last_due_day = (wall_ns - int(seal_after_s * NS_PER_S)) // NS_PER_DAY - 1
        if last_due_day < 0:
            return []
        last_iso = (_EPOCH + dt.timedelta(days=last_due_day)).isoformat()
        rows = conn.execute(
            """SELECT r.device_id, r.day, r.data, r.minutes_with_data, r.updated_ns, s.sha256,
                      s.revision, p.watermark_ns, p.dirty_from_ns
               FROM rollup_days r
               JOIN rollup_progress p ON p.device_id = r.device_id
               LEFT JOIN ledger_seals s ON s.device_id = r.device_id AND s.day = r.day
               WHERE r.day <= ? AND (s.sha256 IS NULL OR r.updated_ns >= ?)
               ORDER BY r.device_id, r.day""", (last_iso, self._seal_scan_ns)).fetchall()
        sealed = []
        next_scan = scan_started
        for (device_id, day, data, minutes, updated, old_sha, revision, watermark,
             dirty_from) in rows:
            end_ns = (day_of(day) + 1) * NS_PER_DAY
            if watermark is None or watermark < end_ns or (dirty_from is not None
                                                            and dirty_from < end_ns):
                # Not final now; its update must still be looked at next time, even if the
                # roll-up that finishes it rewrites nothing (it recomputes the same minutes).
                next_scan = min(next_scan, updated)
                continue
            sha = hashlib.sha256(data).digest()
            if old_sha is not None and bytes(old_sha) == sha:
                continue
            rev = (revision or 0) + 1
            sealed.append(self.append(conn, "rollup", device_id, {
                "day": day, "sha256": sha.hex(), "revision": rev, "minutes": minutes,
                **_capture_of_day(conn, device_id, day)}, wall_ns))
            conn.execute("INSERT OR REPLACE INTO ledger_seals (device_id, day, sha256, revision) "
                         "VALUES (?, ?, ?, ?)", (device_id, day, sha, rev))
        self._seal_scan_ns = next_scan
        return sealed

    def checkpoint(self, conn: sqlite3.Connection, key: "EvidenceKey", wall_ns: int,
                   seal_after_s: float = DEFAULT_SEAL_AFTER_S) -> Checkpoint:
        """Flush pending samples, seal due days, then sign and store the head."""
        flushed = self.flush_pending(conn, wall_ns)
        self.seal_due(conn, wall_ns, seal_after_s)
        head_seq, head_hash = self.head(conn)
        last = conn.execute("SELECT seq, body FROM checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
        if last is None:
            seq, prev_hash, samples_total = 1, "0" * 64, 0
        else:
            seq = last[0] + 1
            prev_hash = hashlib.sha256(last[1].encode("utf-8")).hexdigest()
            samples_total = int(json.loads(last[1])["counts"]["samples_total"])
        if flushed is not None:
            samples_total += flushed.body["samples"]
        devices = conn.execute("SELECT count(*) FROM devices").fetchone()[0]
        sealed_days = conn.execute("SELECT count(*) FROM ledger_seals").fetchone()[0]
        body = {"format": CHECKPOINT_FORMAT, "seq": seq, "head_seq": head_seq,
                "head_hash": bytes(head_hash).hex(), "prev_checkpoint_hash": prev_hash,
                "wall_ns": int(wall_ns),
                "counts": {"entries": head_seq, "devices": devices,
                           "samples_total": samples_total, "sealed_days": sealed_days},
                "key": key.fingerprint}
        text = canon(body).decode("utf-8")
        signature = key.sign(text.encode("utf-8"))
        conn.execute("INSERT INTO checkpoints (seq, head_seq, head_hash, wall_ns, body, signature, "
                     "key_fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (seq, head_seq, head_hash, wall_ns, text, signature, key.fingerprint))
        return Checkpoint(seq, head_seq, bytes(head_hash), wall_ns, body, text, signature,
                          key.fingerprint)


_CAPTURE_UPSERT = """INSERT INTO capture_stats (device_id, hour, samples, backfilled,
                                         first_capture_ns, last_capture_ns) VALUES {}
    ON CONFLICT (device_id, hour) DO UPDATE SET
      samples = samples + excluded.samples,
      backfilled = backfilled + excluded.backfilled,
      first_capture_ns = min(first_capture_ns, excluded.first_capture_ns),
      last_capture_ns = max(last_capture_ns, excluded.last_capture_ns)"""
# Per device and hour of a batch: one multi-row statement, not a step per row.
_upsert_capture_stats = db.many_rows(_CAPTURE_UPSERT, 6)


def _hour_counts(ts: Sequence[int], cutoff: int) -> list[tuple[int, int, int]]:
    """(source hour, samples, backfilled: ts < cutoff) of one device's part of a batch."""
    groups: dict[int, list[int]] = {}
    for t in ts:
        g = groups.get(t // NS_PER_HOUR)
        if g is None:
            g = groups[t // NS_PER_HOUR] = [0, 0]
        g[0] += 1
        if t < cutoff:
            g[1] += 1
    return [(hour, n, b) for hour, (n, b) in groups.items()]


def _last_body(conn: sqlite3.Connection, device_id: str, kind: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT body FROM ledger WHERE device_id = ? AND kind = ? "
                       "ORDER BY seq DESC LIMIT 1", (device_id, kind)).fetchone()
    return None if row is None else json.loads(row[0])


def _capture_of_day(conn: sqlite3.Connection, device_id: str, day: str) -> dict[str, Any]:
    h0 = day_of(day) * 24
    n, back, first, last = conn.execute(
        "SELECT sum(samples), sum(backfilled), min(first_capture_ns), max(last_capture_ns) "
        "FROM capture_stats WHERE device_id = ? AND hour >= ? AND hour < ?",
        (device_id, h0, h0 + 24)).fetchone()
    # No capture record (data from before the ledger): the capture times stay null, unknown.
    return {"samples": n or 0, "backfilled": back or 0, "first_capture_ns": first,
            "last_capture_ns": last}


# ---------------------------------------------------------------------- reads
def read_head(conn: sqlite3.Connection) -> tuple[int, bytes]:
    """(seq, hash) of the newest entry; (0, GENESIS) for an empty ledger."""
    row = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))


def entries(conn: sqlite3.Connection, from_seq: int = 1, to_seq: int | None = None
            ) -> Iterator[Entry]:
    """Entries with from_seq <= seq <= to_seq, in seq order."""
    cur = conn.execute("SELECT seq, kind, captured_ns, device_id, body, hash FROM ledger "
                       "WHERE seq >= ? AND seq <= ? ORDER BY seq",
                       (from_seq, (1 << 62) if to_seq is None else to_seq))
    for seq, kind, captured, device_id, text, h in cur:
        yield Entry(seq, kind, captured, device_id, _json_or_none(text), text, bytes(h))


def checkpoints(conn: sqlite3.Connection, from_seq: int = 1, to_seq: int | None = None
                ) -> list[Checkpoint]:
    rows = conn.execute("SELECT seq, head_seq, head_hash, wall_ns, body, signature, "
                        "key_fingerprint FROM checkpoints WHERE seq >= ? AND seq <= ? ORDER BY seq",
                        (from_seq, (1 << 62) if to_seq is None else to_seq)).fetchall()
    return [Checkpoint(seq, head_seq, bytes(hh), wall, _json_or_none(text), text, bytes(sig), fp)
            for seq, head_seq, hh, wall, text, sig, fp in rows]


def last_checkpoint(conn: sqlite3.Connection) -> Checkpoint | None:
    row = conn.execute("SELECT max(seq) FROM checkpoints").fetchone()
    if row[0] is None:
        return None
    return checkpoints(conn, row[0], row[0])[0]


def receipts(conn: sqlite3.Connection, checkpoint_seq: int | None = None) -> list[Receipt]:
    where, params = ("WHERE checkpoint_seq = ?", (checkpoint_seq,)) if checkpoint_seq else ("", ())
    rows = conn.execute("SELECT checkpoint_seq, witness_fingerprint, body, signature, received_ns "
                        f"FROM receipts {where} ORDER BY checkpoint_seq, witness_fingerprint",
                        params).fetchall()
    return [Receipt(seq, fp, _json_or_none(text), text, bytes(sig), received)
            for seq, fp, text, sig, received in rows]


def add_receipt(conn: sqlite3.Connection, checkpoint_seq: int, witness_fingerprint: str,
                body: dict[str, Any], signature: bytes, received_ns: int) -> None:
    """Keep a witness's receipt (stored as canon(body), the bytes its signature covers); the
    same witness's receipt for the same checkpoint again replaces the first."""
    conn.execute("INSERT OR REPLACE INTO receipts (checkpoint_seq, witness_fingerprint, body, "
                 "signature, received_ns) VALUES (?, ?, ?, ?, ?)",
                 (checkpoint_seq, witness_fingerprint, canon(body).decode("utf-8"),
                  bytes(signature), received_ns))


def capture_hours(conn: sqlite3.Connection, device_id: str) -> dict[int, CaptureHour]:
    """Source hour (ts_ns // NS_PER_HOUR) → what was captured for it; {} for a device (or a
    store) without capture records."""
    return {hour: CaptureHour(n, b, first, last) for hour, n, b, first, last in conn.execute(
        "SELECT hour, samples, backfilled, first_capture_ns, last_capture_ns FROM capture_stats "
        "WHERE device_id = ? ORDER BY hour", (device_id,))}


def pending(conn: sqlite3.Connection) -> tuple[int, int, bytes]:
    """(batches, samples, acc) folded since the last checkpoint."""
    b, n, acc = conn.execute("SELECT batches, samples, acc FROM ledger_pending WHERE id = 1").fetchone()
    return int(b), int(n), bytes(acc)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None
