"""Exporting a store's evidence for a review window into a bundle (docs/bundle.md).

Everything except the optional raw samples is read in ONE read transaction, so a bundle
exported while the gateway writes is a consistent snapshot: the rollups, the ledger entries
that seal them and the checkpoints that sign those are from the same instant.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import migrations
from ..errors import StoreError
from ..evidence_key import PUB_FILE, EvidenceKeyError, fingerprint, load_public_pem
from ..rollup_codec import SUMMARY_COLUMNS
from ..store import db, registry
from ..store.ledger import DEFAULT_SEAL_AFTER_S as SEAL_AFTER_S
from .format import (CAPTURE_STATS, CHECKPOINTS, DEVICES, EVENTS, FORMAT, LEDGER, MANIFEST,
                     NS_PER_DAY, NS_PER_HOUR, PUBLIC_KEY, RAW_SAMPLES, RECEIPTS, ROLLUP_BLOBS,
                     ROLLUP_INDEX, VERSION, canon, jsonl)

Progress = Callable[[str, int, int], None]    # (stage, done, total)

# The ledger schema's first version; an older store has no evidence to export.
LEDGER_SCHEMA = 5


@dataclass(frozen=True)
class ExportResult:
    path: str
    size: int
    devices: int
    rollup_days: int
    entries: int
    checkpoints: int
    receipts: int
    raw_samples: int
    key: str | None
    # Device-days changed or due for sealing since the last checkpoint ("DEVICE/DAY"): the
    # check reports them as altered until a checkpoint seals them; export again after it.
    stale: tuple[str, ...] = ()


def day_start_ns(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) \
        * 1_000_000_000


def export_bundle(store_path: str | os.PathLike[str], out: str | os.PathLike[str],
                  day_from: dt.date, day_to: dt.date, *, raw: bool = False,
                  progress: Progress | None = None) -> ExportResult:
    """Write the bundle for the review days [day_from, day_to] of the store at `store_path` to
    `out` (written to `out`.part, then renamed: an interrupted export leaves no half bundle).
    StoreError when the store cannot be read or predates the ledger.

    The store keeps UTC days; a review day is a local day of the programme's zone
    (Asia/Shanghai for Guangdong), which straddles two UTC days. The bundle therefore holds
    the UTC days from the day before `day_from` to the day after `day_to`: whatever zone the
    reviewer uses (UTC-12 to UTC+14), every minute of the window is in it."""
    if day_to < day_from:
        raise ValueError(f"--to {day_to} is before --from {day_from}")
    utc_from, utc_to = day_from - dt.timedelta(days=1), day_to + dt.timedelta(days=1)
    src = os.fspath(store_path)
    if not os.path.isfile(src):
        raise StoreError(f"store {src!r} does not exist")
    key_pem, key_fp = _public_key(Path(src).parent)
    conn = db.connect(src, readonly=True)
    dest = os.fspath(out)
    tmp = dest + ".part"
    try:
        version = migrations.check_version(conn, src)
        if version < LEDGER_SCHEMA:
            raise StoreError(f"{src}: store schema version {version} has no evidence ledger; "
                             "run the gateway on it once (it migrates) before exporting")
        conn.execute("BEGIN")   # one snapshot for everything below
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            writer = _Writer(zf)
            result = _export(conn, writer, utc_from, utc_to, key_pem, key_fp, progress)
            conn.execute("COMMIT")
            n_raw = _export_raw(src, writer, result["device_ids"], utc_from, utc_to, progress) \
                if raw else 0
            manifest = {
                "format": FORMAT, "version": VERSION,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "created_ns": time.time_ns(),
                "gateway_key": key_fp,
                "window": {"from": day_from.isoformat(), "to": day_to.isoformat()},
                "utc_days": {"from": utc_from.isoformat(), "to": utc_to.isoformat()},
                "ledger": result["ledger"],
                "raw_samples": raw,
                "files": writer.files,
            }
            zf.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1,
                                              sort_keys=True))
        os.replace(tmp, dest)
    except sqlite3.Error as e:
        raise StoreError(f"{src}: cannot read for export: {e}") from e
    finally:
        conn.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return ExportResult(dest, os.path.getsize(dest), len(result["device_ids"]),
                        result["rollup_days"], result["entries"], result["checkpoints"],
                        result["receipts"], n_raw, key_fp, tuple(result["stale"]))


def _public_key(data_dir: Path) -> tuple[bytes | None, str | None]:
    path = data_dir / PUB_FILE
    if not path.exists():
        return None, None
    pem = path.read_bytes()
    try:
        return pem, fingerprint(load_public_pem(pem))
    except EvidenceKeyError as e:
        raise StoreError(f"{path}: {e}") from None


class _Writer:
    """Writes members and records each one's sha256 and size for the manifest."""

    def __init__(self, zf: zipfile.ZipFile):
        self.zf = zf
        self.files: dict[str, dict[str, Any]] = {}

    def member(self, name: str, chunks: Iterable[bytes], *, stored: bool = False) -> int:
        info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        h = hashlib.sha256()
        size = 0
        with self.zf.open(info, "w", force_zip64=True) as f:
            for chunk in chunks:
                f.write(chunk)
                h.update(chunk)
                size += len(chunk)
        self.files[name] = {"sha256": h.hexdigest(), "size": size}
        return size


def _anchor(checkpoints: list[tuple], start_ns: int, needed_seq: int | None) -> tuple | None:
    """The checkpoint the bundle's chain starts from: the last one at or before the window
    start that still precedes every device's newest `device` and `identity` entry (those must
    be in the bundle for its devices to be checked). None: from the chain's first entry."""
    anchor = None
    for cp in checkpoints:
        if cp[3] <= start_ns and (needed_seq is None or cp[1] < needed_seq):
            anchor = cp
    return anchor


def _export(conn: sqlite3.Connection, w: _Writer, day_from: dt.date, day_to: dt.date,
            key_pem: bytes | None, key_fp: str | None, progress: Progress | None) -> dict[str, Any]:
    start_ns = day_start_ns(day_from)
    end_ns = day_start_ns(day_to) + NS_PER_DAY

    devices = [registry.device_record(r)
               for r in conn.execute(registry.SELECT_DEVICES + " ORDER BY d.id")]
    w.member(DEVICES, [json.dumps([_device_dict(d) for d in devices], ensure_ascii=False,
                                  indent=1).encode("utf-8")])

    events = conn.execute("SELECT ts_ns, device_id, kind, data FROM events ORDER BY ts_ns, id")
    w.member(EVENTS, jsonl({"ts_ns": ts, "device_id": dev, "kind": kind, "data": json.loads(data)}
                           for ts, dev, kind, data in events))

    checkpoints = conn.execute(
        "SELECT seq, head_seq, head_hash, wall_ns, body, signature, key_fingerprint "
        "FROM checkpoints ORDER BY seq").fetchall()
    needed = conn.execute(
        "SELECT min(s) FROM (SELECT max(seq) AS s FROM ledger WHERE device_id IS NOT NULL "
        "AND kind IN ('device', 'identity') GROUP BY device_id, kind)").fetchone()[0]
    anchor = _anchor(checkpoints, start_ns, needed)
    first_cp = anchor[0] if anchor else 1
    after_seq = anchor[1] if anchor else 0
    exported_cps = [cp for cp in checkpoints if cp[0] >= first_cp]
    w.member(CHECKPOINTS, jsonl(
        {"seq": seq, "head_seq": head_seq, "head_hash": bytes(head_hash).hex(), "wall_ns": wall,
         "body": body, "signature": bytes(sig).hex(), "key_fingerprint": fp}
        for seq, head_seq, head_hash, wall, body, sig, fp in exported_cps))

    receipts = conn.execute(
        "SELECT checkpoint_seq, witness_fingerprint, body, signature, received_ns FROM receipts "
        "WHERE checkpoint_seq >= ? ORDER BY checkpoint_seq, witness_fingerprint",
        (first_cp,)).fetchall()
    w.member(RECEIPTS, jsonl(
        {"checkpoint_seq": seq, "witness_fingerprint": wfp, "body": body,
         "signature": bytes(sig).hex(), "received_ns": rns}
        for seq, wfp, body, sig, rns in receipts))

    total_entries = conn.execute("SELECT count(*) FROM ledger WHERE seq > ?",
                                 (after_seq,)).fetchone()[0]
    counter = {"n": 0, "last": after_seq}

    def entries() -> Iterable[bytes]:
        cur = conn.execute("SELECT seq, kind, captured_ns, device_id, body, hash FROM ledger "
                           "WHERE seq > ? ORDER BY seq", (after_seq,))
        for seq, kind, captured, dev, body, h in cur:
            counter["n"] += 1
            counter["last"] = seq
            if progress and counter["n"] % 5000 == 0:
                progress("ledger", counter["n"], total_entries)
            yield canon({"seq": seq, "kind": kind, "captured_ns": captured, "device_id": dev,
                         "body": json.loads(body), "hash": bytes(h).hex()}) + b"\n"
    w.member(LEDGER, entries())
    if progress:
        progress("ledger", counter["n"], total_entries)

    total_days = conn.execute("SELECT count(*) FROM rollup_days WHERE day BETWEEN ? AND ?",
                              (day_from.isoformat(), day_to.isoformat())).fetchone()[0]
    index: list[dict[str, Any]] = []
    cols = ", ".join(SUMMARY_COLUMNS)
    seals = {(dev, day): bytes(sha).hex() for dev, day, sha in conn.execute(
        "SELECT device_id, day, sha256 FROM ledger_seals WHERE day BETWEEN ? AND ?",
        (day_from.isoformat(), day_to.isoformat()))}
    last_wall = checkpoints[-1][3] if checkpoints else None
    stale: list[str] = []

    def blobs() -> Iterable[bytes]:
        offset = 0
        cur = conn.execute(
            f"SELECT device_id, day, layout_version, data, {cols}, updated_ns FROM rollup_days "
            "WHERE day BETWEEN ? AND ? ORDER BY device_id, day",
            (day_from.isoformat(), day_to.isoformat()))
        for dev, day, layout, data, *rest in cur:
            blob = bytes(data)
            meta = dict(zip(SUMMARY_COLUMNS + ("updated_ns",), rest))
            sha = hashlib.sha256(blob).hexdigest()
            index.append({"device_id": dev, "day": day, "layout_version": layout,
                          "offset": offset, "length": len(blob), "sha256": sha, "meta": meta})
            if _stale(seals.get((dev, day)), sha, day, last_wall):
                stale.append(f"{dev}/{day}")
            offset += len(blob)
            if progress and len(index) % 500 == 0:
                progress("rollups", len(index), total_days)
            yield blob
    w.member(ROLLUP_BLOBS, blobs(), stored=True)
    w.member(ROLLUP_INDEX, jsonl(index))
    if progress:
        progress("rollups", len(index), total_days)

    stats = conn.execute(
        "SELECT device_id, hour, samples, backfilled, first_capture_ns, last_capture_ns "
        "FROM capture_stats WHERE hour >= ? AND hour < ? ORDER BY device_id, hour",
        (start_ns // NS_PER_HOUR, end_ns // NS_PER_HOUR))
    w.member(CAPTURE_STATS, jsonl(
        {"device_id": dev, "hour": hour, "samples": n, "backfilled": b,
         "first_capture_ns": first, "last_capture_ns": last}
        for dev, hour, n, b, first, last in stats))
    if key_pem is not None:
        w.member(PUBLIC_KEY, [key_pem])
    return {"device_ids": [d.id for d in devices], "rollup_days": len(index), "stale": stale,
            "entries": counter["n"], "checkpoints": len(exported_cps), "receipts": len(receipts),
            "ledger": {"anchor_checkpoint": anchor[0] if anchor else None,
                       "first_seq": after_seq + 1, "last_seq": counter["last"]}}


def _stale(seal: str | None, sha: str, day: str, last_wall_ns: int | None) -> bool:
    """A day the check will call altered although nobody touched it: re-rolled (a late
    sample) or become due for sealing since the last checkpoint. The next checkpoint seals it."""
    if seal is not None:
        return seal != sha
    due = day_start_ns(dt.date.fromisoformat(day)) + NS_PER_DAY + int(SEAL_AFTER_S * 1e9)
    return last_wall_ns is not None and due <= last_wall_ns


def _device_dict(d: Any) -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "protocol": d.protocol, "profile": d.profile,
            "line": d.line, "location": d.location, "ideal_cycle_s": d.ideal_cycle_s,
            "identity": d.identity.to_dict() if d.identity else None,
            "fingerprint": d.identity.fingerprint() if d.identity else "",
            "first_seen_ns": d.first_seen_ns, "last_seen_ns": d.last_seen_ns}


def _export_raw(src: str, w: _Writer, device_ids: list[str], day_from: dt.date,
                day_to: dt.date, progress: Progress | None) -> int:
    """Raw samples retained in the window, as [device, signal, ts_ns, value, quality] lines.
    Read after the snapshot (through the store, which decodes its blocks): supporting data,
    not covered by the ledger's signatures (docs/evidence.md)."""
    from ..store import Store

    start_ns, end_ns = day_start_ns(day_from), day_start_ns(day_to) + NS_PER_DAY
    count = {"n": 0}
    store = Store.open(src, readonly=True)
    try:
        def lines() -> Iterable[bytes]:
            for i, dev in enumerate(device_ids, 1):
                for s in store.samples(dev, start_ns=start_ns, end_ns=end_ns):
                    count["n"] += 1
                    yield canon([s.device_id, s.signal, s.ts_ns, s.value, int(s.quality)]) + b"\n"
                if progress:
                    progress("raw samples", i, len(device_ids))
        w.member(RAW_SAMPLES, lines())
    finally:
        store.close()
    return count["n"]
