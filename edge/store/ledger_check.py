"""`Store.verify_ledger`: recompute the evidence ledger (edge.store.ledger) against a store.

What is checked, each failure a Problem naming the ledger seq (or the checkpoint) it concerns:
- every entry's hash is sha256(previous hash + canon(entry)), seqs contiguous from 1: an edited
  body, a deleted, inserted or reordered row breaks this at that seq;
- every checkpoint is signed by the public key, names that key, chains to the previous
  checkpoint, and its head hash is the stored hash at its head seq (a truncated chain, or one
  rebuilt after the last checkpoint, disagrees with what was signed);
- the stored rollup of every sealed device-day has the sha256 of its newest seal (an edited or
  removed rollup), and every registered device has a `device` entry (one inserted in SQL has none).

It cannot tell anything about data written before the ledger existed, nor about samples
committed since the last checkpoint beyond the pending accumulator's own consistency.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import evidence_key
from .ledger import GENESIS, canon, entries, entry_hash, checkpoints


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int | None          # the ledger seq concerned, None when it is not one entry
    what: str

    def __str__(self) -> str:
        return f"ledger seq {self.seq}: {self.what}" if self.seq is not None else self.what


@dataclass
class LedgerCheck:
    entries: int = 0
    checkpoints: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def seqs(self) -> set[int]:
        """The ledger seqs named by a problem."""
        return {p.seq for p in self.problems if p.seq is not None}


def check(conn: sqlite3.Connection, public_key: Any, data_dir: Path) -> LedgerCheck:
    result = LedgerCheck()
    hashes = _check_chain(conn, result)
    key, why_none = _public_key(public_key, data_dir)
    _check_checkpoints(conn, result, hashes, key, why_none)
    _check_rollups(conn, result)
    _check_devices(conn, result)
    return result


def _check_chain(conn: sqlite3.Connection, result: LedgerCheck) -> dict[int, bytes]:
    """Stored hash per seq; each entry checked against the stored hash before it, so one
    edited or missing row is named once, at its own seq."""
    hashes: dict[int, bytes] = {}
    expected_seq, prev = 1, GENESIS
    for e in entries(conn):
        result.entries += 1
        if e.seq != expected_seq:
            gap = (f"seq {expected_seq} is missing" if e.seq == expected_seq + 1
                   else f"seqs {expected_seq}..{e.seq - 1} are missing")
            result.problems.append(Problem(e.seq, f"{gap} before it (deleted?)"))
        elif e.body is None or canon(e.body).decode("utf-8") != e.body_text:
            result.problems.append(Problem(e.seq, f"{e.kind} entry body is not canonical JSON "
                                                  "(edited?)"))
        elif entry_hash(prev, e.seq, e.kind, e.captured_ns, e.device_id, e.body) != e.hash:
            result.problems.append(Problem(e.seq, f"{e.kind} entry"
                                                  f"{' of ' + e.device_id if e.device_id else ''}"
                                                  " does not hash to its stored hash after the "
                                                  "previous entry (edited, inserted or reordered)"))
        hashes[e.seq] = e.hash
        expected_seq, prev = e.seq + 1, e.hash
    return hashes


def _public_key(given: Any, data_dir: Path) -> tuple[Any, str | None]:
    """(the key, None), or (None, why there is none)."""
    try:
        if given is not None:
            return _as_key(given), None
        return evidence_key.load_public_pem((data_dir / evidence_key.PUB_FILE).read_bytes()), None
    except (OSError, evidence_key.EvidenceKeyError) as exc:
        return None, str(exc)


def _check_checkpoints(conn: sqlite3.Connection, result: LedgerCheck, hashes: dict[int, bytes],
                       public_key: Any, why_none: str | None) -> None:
    fp = evidence_key.fingerprint(public_key) if public_key is not None else None
    head = max(hashes, default=0)
    prev_body: str | None = None
    expected = 1
    for c in checkpoints(conn):
        result.checkpoints += 1
        name = f"checkpoint {c.seq}"
        if public_key is None and result.checkpoints == 1:
            result.problems.append(Problem(None, f"no public key to check the checkpoints' "
                                                 f"signatures with ({why_none})"))
        if c.seq != expected:
            result.problems.append(Problem(None, f"{name}: checkpoints {expected}..{c.seq - 1} "
                                                 "are missing"))
        expected = c.seq + 1
        if public_key is not None and not evidence_key.verify(public_key, c.signature,
                                                              c.body_bytes):
            result.problems.append(Problem(None, f"{name}: signature does not verify with key "
                                                 f"{fp} (re-signed with another key, or edited)"))
        b = c.body
        if not isinstance(b, dict):
            result.problems.append(Problem(None, f"{name}: body is not JSON"))
            prev_body = c.body_text
            continue
        if fp is not None and (b.get("key") != fp or c.key_fingerprint != fp):
            result.problems.append(Problem(None, f"{name}: names key {b.get('key')}, not {fp}"))
        columns = {"seq": c.seq, "head_seq": c.head_seq, "head_hash": c.head_hash.hex(),
                   "wall_ns": c.wall_ns}
        for k, v in columns.items():
            if b.get(k) != v:
                result.problems.append(Problem(None, f"{name}: column {k} {v!r} differs from "
                                                     f"the signed body's {b.get(k)!r}"))
        want_prev = ("0" * 64 if prev_body is None
                     else hashlib.sha256(prev_body.encode("utf-8")).hexdigest())
        if b.get("prev_checkpoint_hash") != want_prev:
            result.problems.append(Problem(None, f"{name}: does not chain to the checkpoint "
                                                 "before it"))
        hs = b.get("head_seq")
        if isinstance(hs, int) and hs > 0:
            stored = hashes.get(hs)
            if stored is None:
                result.problems.append(Problem(hs, f"{name} signed a chain up to seq {hs}, "
                                                   f"but the ledger ends at {head} or lacks it "
                                                   "(truncated?)"))
            elif stored.hex() != b.get("head_hash"):
                result.problems.append(Problem(hs, f"stored hash differs from the one {name} "
                                                   "signed (chain rewritten?)"))
        prev_body = c.body_text


def _check_rollups(conn: sqlite3.Connection, result: LedgerCheck) -> None:
    sealed: dict[tuple[str, str], tuple[int, str]] = {}
    for seq, device_id, text in conn.execute(
            "SELECT seq, device_id, body FROM ledger WHERE kind = 'rollup' ORDER BY seq"):
        try:
            body = json.loads(text)
            sealed[(device_id, body["day"])] = (seq, body["sha256"])
        except (ValueError, KeyError, TypeError):
            continue     # the chain check names this entry already
    for (device_id, day), (seq, sha) in sorted(sealed.items()):
        # As a blob whatever an edit made of it: a TEXT value would not even decode.
        row = conn.execute("SELECT CAST(data AS BLOB) FROM rollup_days WHERE device_id = ? "
                           "AND day = ?",
                           (device_id, day)).fetchone()
        if row is None:
            result.problems.append(Problem(seq, f"rollup {device_id} {day} sealed here is gone "
                                                "from the store (removed)"))
        elif hashlib.sha256(row[0]).hexdigest() != sha:
            result.problems.append(Problem(seq, f"rollup {device_id} {day} differs from what "
                                                "was sealed here (edited)"))


def _check_devices(conn: sqlite3.Connection, result: LedgerCheck) -> None:
    for (device_id,) in conn.execute(
            "SELECT id FROM devices d WHERE NOT EXISTS (SELECT 1 FROM ledger l "
            "WHERE l.device_id = d.id AND l.kind = 'device') ORDER BY id"):
        result.problems.append(Problem(None, f"device {device_id} has no ledger entry (inserted "
                                             "outside shangyun, or registered before the ledger "
                                             "and not configured since)"))


def _as_key(key: Any) -> Any:
    return key if not isinstance(key, (bytes, str)) else evidence_key.load_public_pem(key)
