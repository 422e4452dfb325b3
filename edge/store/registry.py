"""The device registry's SQL: devices, their status and identity evidence, and events. Run by
`Store` inside its write transactions (each function takes the writer connection)."""
from __future__ import annotations

import json
import sqlite3

from ..errors import StoreError
from ..model import DeviceSpec, IdentityEvidence
from ..records import DeviceRecord

SELECT_DEVICES = (
    "SELECT d.id, d.name, d.protocol, d.profile, d.line, d.location, d.ideal_cycle_s, "
    "d.identity, d.online, d.last_seen_ns, d.first_seen_ns, d.last_error, p.max_ts_ns "
    "FROM devices d LEFT JOIN rollup_progress p ON p.device_id = d.id")


def device_record(r: tuple) -> DeviceRecord:
    identity = IdentityEvidence.from_dict(json.loads(r[7])) if r[7] else None
    return DeviceRecord(id=r[0], name=r[1], protocol=r[2], profile=r[3], line=r[4], location=r[5],
                        ideal_cycle_s=r[6], identity=identity, online=bool(r[8]),
                        last_seen_ns=r[9], first_seen_ns=r[10], last_error=r[11],
                        last_sample_ns=r[12])


def upsert_device(conn: sqlite3.Connection, spec: DeviceSpec) -> None:
    conn.execute(
        """INSERT INTO devices (id, name, protocol, profile, line, location, ideal_cycle_s)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET name = excluded.name, protocol = excluded.protocol,
             profile = excluded.profile, line = excluded.line, location = excluded.location,
             ideal_cycle_s = excluded.ideal_cycle_s""",
        (spec.id, spec.name, spec.protocol, spec.profile, spec.line, spec.location,
         spec.ideal_cycle_s))


def set_status(conn: sqlite3.Connection, device_id: str, online: bool, ts_ns: int,
               error: str | None) -> None:
    cur = conn.execute(
        """UPDATE devices SET online = ?, last_error = ?,
             last_seen_ns = CASE WHEN ? THEN max(coalesce(last_seen_ns, ?), ?) ELSE last_seen_ns END,
             first_seen_ns = CASE WHEN ? THEN coalesce(first_seen_ns, ?) ELSE first_seen_ns END
           WHERE id = ?""",
        (int(online), error, int(online), ts_ns, ts_ns, int(online), ts_ns, device_id))
    if cur.rowcount == 0:
        raise StoreError(f"unknown device {device_id!r}: upsert_device it first")


def set_identity(conn: sqlite3.Connection, device_id: str, identity: IdentityEvidence,
                 ts_ns: int) -> str | None:
    """Store the evidence. The first time it is simply stored; when a stored identity with a
    fingerprint differs, an `identity_changed` event with both (`old`, `new`, and their
    fingerprints) is recorded in the same transaction, so the change is never silent.
    Returns the old fingerprint when it was such a change (the ledger records it too)."""
    row = conn.execute("SELECT identity FROM devices WHERE id = ?", (device_id,)).fetchone()
    if row is None:
        raise StoreError(f"unknown device {device_id!r}: upsert_device it first")
    changed_from = None
    if row[0] is not None:
        old = IdentityEvidence.from_dict(json.loads(row[0]))
        # Unknown before (no evidence presented) is not a change, only a first sighting.
        if old.fingerprint() and old.fingerprint() != identity.fingerprint():
            insert_event(conn, "identity_changed", ts_ns, device_id, {
                "old": old.to_dict(), "new": identity.to_dict(),
                "old_fingerprint": old.fingerprint(),
                "new_fingerprint": identity.fingerprint()})
            changed_from = old.fingerprint()
    conn.execute("UPDATE devices SET identity = ? WHERE id = ?",
                 (json.dumps(identity.to_dict(), sort_keys=True), device_id))
    return changed_from


def insert_event(conn: sqlite3.Connection, kind: str, ts_ns: int, device_id: str | None,
                 data: dict) -> None:
    conn.execute("INSERT INTO events (ts_ns, device_id, kind, data) VALUES (?, ?, ?, ?)",
                 (ts_ns, device_id, kind, json.dumps(data, sort_keys=True)))
