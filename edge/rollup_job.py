"""`Store.roll_up`: keep the stored minute rollups in step with the raw samples.

Per device, `rollup_progress` says how far rollups are done (`watermark_ns`), the earliest late
sample written below it since (`dirty_from_ns`), the newest sample (`max_ts_ns`) and where
retention deleted raw samples (`pruned_before_ns`). A roll-up recomputes, a UTC day at a time,
the minutes from the earlier of watermark and dirty-from up to `until_ns` floored to the minute.
A sample influences its own minute and later ones, and, through a counter or meter increase
spread over the interval before it (edge.rollup), at most the stale_after_s before it. So each
chunk starts stale_after_s earlier (the back-off) and reads samples up to stale_after_s past
its end (the lookahead); recomputing from there on and overwriting those minutes in the day
records is exact. Where retention pruned the raw samples the back-off stops stale_after_s after
the pruned limit, so recomputed minutes never lose their carry-in (an increase spreading back
past that is not counted).

Each day chunk is read, computed, merged into its day record and its progress committed while
holding the store's writer lock, in one transaction: a concurrent write of late samples is
either seen by the chunk or marks the device dirty again for the next one, and a crash loses
only the chunk being computed.
"""
from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from typing import TYPE_CHECKING

import numpy as np

from .model import NS_PER_S, Role
from .rollup import NS_PER_MIN, SignalColumns, numeric, rollup_columns
from .rollup_codec import pack_day, summarize_day, unpack_day, upsert_day
from .rollup_layout import MINUTES_PER_DAY, empty_day
from .store import codec
from .store import samples as raw

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * NS_PER_S
# Signals whose values the rollup reads; others only need timestamps and quality.
_VALUED = {r.value for r in (Role.STATE, Role.COUNT_TOTAL, Role.COUNT_GOOD, Role.COUNT_REJECT,
                             Role.POWER_KW, Role.ENERGY_KWH, Role.REASON_CODE)}


def roll_up(store: "Store", until_ns: int) -> int:
    to = until_ns // NS_PER_MIN * NS_PER_MIN
    # Read chunks, not a long tail of recent rows that every device's read would decode again.
    store.compact()
    conn = store._writer()
    with store._wlock:
        devices = [r[0] for r in conn.execute("SELECT device_id FROM rollup_progress ORDER BY device_id")]
    written = 0
    for device_id in devices:
        while True:
            with store._wlock:
                done, wrote = _next_chunk(store, conn, device_id, to)
            written += wrote
            if done:
                break
    return written


def _next_chunk(store: "Store", conn: sqlite3.Connection, device_id: str, to: int) -> tuple[bool, int]:
    """Roll up the next day chunk of one device; (no more work, device-days written)."""
    stale_ns = store.rollup_config.stale_ns
    watermark, dirty_from, max_ts, pruned_before = conn.execute(
        "SELECT watermark_ns, dirty_from_ns, max_ts_ns, pruned_before_ns FROM rollup_progress "
        "WHERE device_id = ?", (device_id,)).fetchone()
    starts = []
    if dirty_from is not None:
        starts.append(dirty_from)
    if watermark is not None and watermark < to:
        if max_ts >= watermark - stale_ns:
            starts.append(watermark)
        elif dirty_from is None:
            # Nothing written since can reach past the watermark (held values end stale_after_s
            # after the last sample): those minutes are empty, no day records needed.
            _set_progress(conn, device_id, to, None)
            return True, 0
    if not starts:
        return True, 0
    frm = min(starts) // NS_PER_MIN * NS_PER_MIN
    if frm >= to:
        return True, 0
    chunk_end = min((frm // NS_PER_DAY + 1) * NS_PER_DAY, to)
    # Below pruned_before the raw samples behind the stored minutes are gone: late samples there
    # (a replayed backlog) may only fill minutes that have no rollup yet, never replace one, and
    # there is nothing earlier to back off into.
    fill_only = pruned_before is not None and frm < pruned_before
    if fill_only:
        chunk_end = min(chunk_end, _ceil_minute(pruned_before))
        back = frm
    else:
        back = (frm - stale_ns) // NS_PER_MIN * NS_PER_MIN
        if pruned_before is not None:
            back = max(back, min(_ceil_minute(pruned_before + stale_ns), frm))
    n = (chunk_end - back) // NS_PER_MIN
    columns = _read_columns(conn, device_id, back, chunk_end + stale_ns)
    arr = rollup_columns(columns, back, n, store.rollup_config)

    conn.execute("BEGIN IMMEDIATE")
    try:
        wrote = _merge(conn, device_id, back, arr, fill_only)
        new_watermark = chunk_end if watermark is None else max(watermark, chunk_end)
        still_dirty = chunk_end if watermark is not None and chunk_end < watermark else None
        _set_progress(conn, device_id, new_watermark, still_dirty)
        conn.execute("COMMIT")
    except BaseException:
        # SQLite rolls back by itself on some errors (disk full): a second ROLLBACK would raise
        # "no transaction is active" and hide the real error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return False, wrote


def _set_progress(conn: sqlite3.Connection, device_id: str, watermark: int, dirty_from: int | None) -> None:
    conn.execute("UPDATE rollup_progress SET watermark_ns = ?, dirty_from_ns = ? WHERE device_id = ?",
                 (watermark, dirty_from, device_id))


def _ceil_minute(ns: int) -> int:
    return -(-ns // NS_PER_MIN) * NS_PER_MIN


def _merge(conn: sqlite3.Connection, device_id: str, start_ns: int, arr: np.ndarray,
           fill_only: bool = False) -> int:
    """Overwrite the minutes from start_ns on in their day records (a chunk with its back-off
    can span midnight); the number of day records written."""
    wrote, col = 0, 0
    while col < arr.shape[1]:
        at = start_ns + col * NS_PER_MIN
        first_minute = (at % NS_PER_DAY) // NS_PER_MIN
        take = min(arr.shape[1] - col, MINUTES_PER_DAY - first_minute)
        day = dt.date(1970, 1, 1) + dt.timedelta(days=at // NS_PER_DAY)
        wrote += _merge_day(conn, device_id, day, first_minute, arr[:, col:col + take], fill_only)
        col += take
    return wrote


def _merge_day(conn: sqlite3.Connection, device_id: str, day: dt.date, first_minute: int,
               arr: np.ndarray, fill_only: bool = False) -> int:
    """Overwrite minutes [first_minute, first_minute + n) of the day record (with `fill_only`,
    only those that are empty in it); 1 if written (0 when they are already what is stored: a
    back-off usually recomputes the same minutes)."""
    row = conn.execute("SELECT layout_version, data FROM rollup_days WHERE device_id = ? AND day = ?",
                       (device_id, day.isoformat())).fetchone()
    if row is None:
        if not arr.any():
            return 0
        full = empty_day()
    else:
        full = unpack_day(row[1], row[0], f"{device_id}/{day}")
    assert first_minute + arr.shape[1] <= MINUTES_PER_DAY
    piece = full[:, first_minute:first_minute + arr.shape[1]]
    if fill_only:
        empty = ~piece.any(axis=0)
        arr = np.where(empty[None, :], arr, piece)
    if row is not None and np.array_equal(piece, arr):
        return 0
    piece[...] = arr
    upsert_day(conn, device_id, day, pack_day(full), summarize_day(full))
    return 1


def _read_columns(conn: sqlite3.Connection, device_id: str, start_ns: int, end_ns: int
                  ) -> dict[str, SignalColumns]:
    """Each signal's samples in [start_ns, end_ns), preceded by its history before start_ns:
    the last GOOD/UNCERTAIN sample and the last BAD one (see edge.rollup)."""
    out = {}
    # One decode of the device's recent rows serves every signal (roll_up compacts first, so
    # there are few).
    recent = raw.split_by_series(raw.recent(conn, device_id, None, end_ns))
    # The device's chunks in the range in one query and one decode; they usually hold each
    # signal's history too.
    chunks = raw.device_chunks(conn, device_id, start_ns, end_ns)
    empty = codec.empty()
    for sid, signal in conn.execute("SELECT id, signal FROM series WHERE device_id = ?",
                                    (device_id,)).fetchall():
        rec = recent.get(sid, empty)
        near = chunks.get(sid, empty)
        history = [raw.last_before(conn, sid, rec, start_ns, bad=False, near=near),
                   raw.last_before(conn, sid, rec, start_ns, bad=True, near=near)]
        history.sort(key=lambda b: int(b.ts[0]) if len(b) else 0)
        block = codec.concat([h for h in history if len(h)]
                             + [raw.overlay(near, rec, start_ns, end_ns)])
        if not len(block):
            continue
        if signal == Role.STATE.value:
            out[signal] = SignalColumns.from_lists(block.ts, block.values(), block.quality,
                                                   state=True)
        else:
            values = _numbers(block) if signal in _VALUED else np.full(len(block), np.nan)
            out[signal] = SignalColumns(block.ts, values, block.quality.astype(np.int8))
    return out


def _numbers(block: codec.Block) -> np.ndarray:
    """edge.rollup.numeric(block.values()), without making a Python object per value."""
    kinds = block.kq >> 2
    if (kinds == codec.STR).any():
        return numeric(block.values())      # text: numeric's own rules for it
    out = block.bits.astype(np.float64)
    is_float = kinds == codec.FLOAT
    out[is_float] = block.bits[is_float].view(np.float64)
    is_bool = kinds == codec.BOOL
    out[is_bool] = block.bits[is_bool] != 0
    return out
