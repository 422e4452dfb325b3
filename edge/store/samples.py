"""Raw samples laid out for append: a write dirties a page or two, not one page per series.

Two tables (edge.migrations, version 3):
  * `recent`: one row per (write batch, device), a codec.Block blob with a series id per sample,
    in rowid order with no secondary index. A batch of 500 samples spread over 500 series is a
    few KB appended at the end of one b-tree, so the WAL and the checkpoint write a few pages
    instead of ~500 (the old layout, clustered by (series, ts), wrote ~8.6 KB per value).
  * `chunks`: one row per series and stretch of time (within one BUCKET_NS), written by
    `compact`, which moves everything in `recent` over in one transaction. A chunk holds
    minutes of one series, so its page write is shared by hundreds of values. Within a series
    chunks never overlap (compaction merges a late sample into the chunk it falls in), so "the
    chunks of a series in [a, b)" is one index range starting at the bucket of a.

Idempotence is "the latest write wins", resolved where samples are read: recent rows are newer
than every chunk, and among recent rows a higher rowid is newer (codec.latest_wins). Compaction
applies the same rule when it merges, so reads and counts always see one sample per
(series, ts).

Every function takes the connection and runs inside the caller's transaction or read snapshot;
edge.store holds the locks.
"""
from __future__ import annotations

import operator
import sqlite3
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..model import NS_PER_S, Quality
from . import codec
from .codec import Block

BUCKET_NS = 3600 * NS_PER_S       # no chunk spans more: bounds range lookups and chunk size
_BAD = int(Quality.BAD)
_GOOD = int(Quality.GOOD)
_I64_MAX = 2**63 - 1


def store_order(devices: list[str], *columns: Sequence) -> tuple[list[str], list[int], tuple[Sequence, ...]]:
    """(the write's devices in the order they first appear, each one's sample count, `columns` in
    store order). Store order, on which the ledger's batch digest is defined: grouped by device,
    devices in that order, each device's samples in batch order. Batches usually come grouped
    already (a message's samples are one device's) and their columns are returned as given."""
    order = {d: i for i, d in enumerate(dict.fromkeys(devices))}
    device_of = np.fromiter(map(order.__getitem__, devices), dtype=np.int64, count=len(devices))
    if len(order) > 1 and bool((device_of[1:] < device_of[:-1]).any()):
        pick = operator.itemgetter(*np.argsort(device_of, kind="stable").tolist())
        columns = tuple(pick(c) for c in columns)
    return list(order), np.bincount(device_of, minlength=len(order)).tolist(), columns


def insert(conn: sqlite3.Connection, devices: Sequence[str], counts: Sequence[int],
           block: Block) -> list[tuple[int, int]]:
    """Append a write, one `recent` row per device: `block` holds the devices' samples one
    device after the other, counts[i] of devices[i] (at least one each). Returns each device's
    (min ts, max ts). The rows are encoded in one pass (codec.encode_parts): numpy's per-call
    cost is most of a ten-sample device's."""
    ends = np.cumsum(counts)
    starts = ends - counts
    spans = list(zip(np.minimum.reduceat(block.ts, starts).tolist(),
                     np.maximum.reduceat(block.ts, starts).tolist()))
    conn.executemany("INSERT INTO recent (device_id, min_ts, max_ts, n, data) VALUES (?, ?, ?, ?, ?)",
                     [(d, lo, hi, n, blob) for d, (lo, hi), n, blob
                      in zip(devices, spans, np.asarray(counts).tolist(),
                             codec.encode_parts(block, ends))])
    return spans


# ---------------------------------------------------------------------- reading
def recent(conn: sqlite3.Connection, device_id: str, start: int | None = None,
           end: int | None = None) -> Block:
    """A device's recent samples in [start, end), one per (series, ts), sorted by them."""
    for _, block in recent_by_device(conn, device_id, start, end):
        return block
    return codec.empty()


def recent_by_device(conn: sqlite3.Connection, device_id: str | None, start: int | None = None,
                     end: int | None = None) -> Iterator[tuple[str, Block]]:
    """(device, its recent samples as `recent` gives them) for one device or all. Rows are
    fetched compressed and decoded a device at a time, so memory stays one device's worth."""
    where, params = _recent_where(device_id, start, end)
    blobs: dict[str, list[tuple[int, bytes]]] = {}
    for rid, dev, data in conn.execute(
            f"SELECT id, device_id, data FROM recent WHERE {where} ORDER BY id", params):
        blobs.setdefault(dev, []).append((rid, data))
    for dev, rows in blobs.items():
        block = codec.decode_many([data for _, data in rows], lambda i: f"recent row {rows[i][0]}")
        yield dev, _in_range(codec.latest_wins(block), start, end)


def split_by_series(block: Block) -> dict[int, Block]:
    """{series id: its samples, without the sid column} of a block sorted by (sid, ts)."""
    if not len(block):
        return {}
    assert block.sid is not None
    cuts = np.flatnonzero(block.sid[1:] != block.sid[:-1]) + 1
    out = {}
    for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(block)].tolist()):
        part = block.take(np.arange(lo, hi))
        part.sid = None
        out[int(block.sid[lo])] = part
    return out


def series(conn: sqlite3.Connection, sid: int, rec: Block | None, start: int | None,
           end: int | None) -> Block:
    """One series' samples in [start, end), sorted, one per ts: its chunks overlaid with `rec`
    (its recent samples, from `recent` + `split_by_series`)."""
    rows = _chunk_rows(conn, sid, start, end).fetchall()
    chunked = codec.decode_many([data for _, data in rows], lambda i: f"chunk {rows[i][0]}")
    return _overlay(_in_range(chunked, start, end), rec, start, end)


def device_chunks(conn: sqlite3.Connection, device_id: str, start: int, end: int) -> dict[int, Block]:
    """Samples of every chunk of a device starting in [start's bucket, end), by series id,
    each series' in time order: what a roll-up of [start, end) reads (`overlay`, and
    `last_before`'s `near`), in one query and one decode."""
    rows = conn.execute(
        "SELECT series_id, id, n, data FROM chunks WHERE series_id IN "
        "(SELECT id FROM series WHERE device_id = ?) AND start_ns >= ? AND start_ns < ? "
        "ORDER BY series_id, start_ns", (device_id, _bucket(start), end)).fetchall()
    block = codec.decode_many([r[3] for r in rows], lambda i: f"chunk {rows[i][1]}")
    ends = np.cumsum([r[2] for r in rows], dtype=np.int64)
    if len(rows) and int(ends[-1]) != len(block):
        # A chunk whose count is not what it holds: decode them one by one, trusting none.
        parts: dict[int, list[Block]] = {}
        for sid, cid, _, data in rows:
            parts.setdefault(sid, []).append(codec.decode(data, f"chunk {cid}"))
        return {sid: codec.concat(bs) for sid, bs in parts.items()}
    out: dict[int, Block] = {}
    lo = 0
    for k, (sid, *_) in enumerate(rows):       # rows of one series are consecutive
        if k + 1 == len(rows) or rows[k + 1][0] != sid:
            out[sid] = block.take(np.arange(lo, int(ends[k])))
            lo = int(ends[k])
    return out


def overlay(chunked: Block, rec: Block | None, start: int | None, end: int | None) -> Block:
    """`series` from a series' chunk samples (those of `_chunk_rows`, or more): in [start,
    end), overlaid with its recent ones."""
    return _overlay(_in_range(chunked, start, end), rec, start, end)


def _overlay(chunked: Block, rec: Block | None, start: int | None, end: int | None) -> Block:
    """A series' chunked samples in [start, end) overlaid with its recent ones (newer)."""
    if rec is not None:
        rec = _in_range(rec, start, end)
    if rec is None or not len(rec):
        return chunked
    if not len(chunked) or rec.ts[0] > chunked.ts[-1]:
        return codec.concat([chunked, rec])       # the usual case: nothing to overlay
    return codec.latest_wins(codec.concat([chunked, rec]))


def latest(conn: sqlite3.Connection, device_id: str, sid: int,
           since: int | None) -> Block | None:
    """The series' newest sample at or after `since` (a one-sample block), or None.

    Live views ask this every few seconds per device, so it decodes as few recent rows as it
    can: newest max_ts first, stopping once no remaining row can hold anything newer."""
    where, params = _recent_where(device_id, since, None)
    rows = conn.execute(f"SELECT id, max_ts FROM recent WHERE {where}", params).fetchall()
    rows.sort(key=lambda r: (r[1], r[0]), reverse=True)
    best: tuple[int, int, Block] | None = None          # (ts, row id, sample)
    for rid, max_ts in rows:
        if best is not None and max_ts < best[0]:
            break
        (data,) = conn.execute("SELECT data FROM recent WHERE id = ?", (rid,)).fetchone()
        b = codec.decode(data, f"recent row {rid}")
        assert b.sid is not None
        mine = np.flatnonzero(b.sid == sid)
        if not len(mine):
            continue
        # Within a row the later position is the later write: the last one at the max ts.
        at = mine[np.flatnonzero(b.ts[mine] == b.ts[mine].max())[-1]]
        t = int(b.ts[at])
        if since is not None and t < since:
            continue
        if best is None or (t, rid) > best[:2]:
            best = (t, rid, b.take(np.array([at])))
    row = conn.execute("SELECT id, end_ns, data FROM chunks WHERE series_id = ? "
                       "ORDER BY start_ns DESC LIMIT 1", (sid,)).fetchone()
    if best is not None and (row is None or best[0] >= row[1]):
        return best[2]                   # at equal ts the recent write is the newer one
    if row is None or (since is not None and row[1] < since):
        return None
    chunk = codec.decode(row[2], f"chunk {row[0]}")
    return chunk.take(np.array([len(chunk) - 1]))


def last_before(conn: sqlite3.Connection, sid: int, rec: Block, start: int, *, bad: bool,
                near: Block | None = None) -> Block:
    """The series' last BAD sample (`bad`) or last GOOD/UNCERTAIN one before `start` (0 or 1
    samples). `rec`: its recent samples, which override chunk samples at the same ts. `near`:
    the samples of its chunks starting at or after start's bucket (all of those starting
    before `start`, in order; from `device_chunks`), so only older chunks need a query."""
    rec = _in_range(rec, None, start)
    hit = np.flatnonzero(rec.quality == _BAD if bad else rec.quality < _BAD)
    best = rec.take(hit[-1:])
    upto = start
    if near is not None:
        b = _in_range(near, None, start)
        hit = np.flatnonzero((b.quality == _BAD if bad else b.quality < _BAD) & ~np.isin(b.ts, rec.ts))
        if len(hit):
            # Chunks never overlap and lie within a bucket: older chunks hold nothing later.
            return b.take(hit[-1:]) if not len(best) or b.ts[hit[-1]] > best.ts[0] else best
        upto = min(start, _bucket(start))
    # The partial index keeps "last BAD" one seek even when a series never had a BAD sample.
    source, test = ("chunks INDEXED BY chunks_bad", "n_bad > 0") if bad else ("chunks", "n_bad < n")
    cur = conn.execute(f"SELECT id, end_ns, data FROM {source} WHERE series_id = ? AND start_ns < ? "
                       f"AND {test} ORDER BY start_ns DESC", (sid, upto))
    for cid, end_ns, data in cur:
        if len(best) and end_ns < best.ts[0]:
            break                        # everything further back is older than what we have
        b = _in_range(codec.decode(data, f"chunk {cid}"), None, start)
        q = b.quality
        keep = (q == _BAD if bad else q < _BAD) & ~np.isin(b.ts, rec.ts)
        hit = np.flatnonzero(keep)
        if len(hit):
            if not len(best) or b.ts[hit[-1]] > best.ts[0]:
                best = b.take(hit[-1:])
            break
    cur.close()
    return best


def count(conn: sqlite3.Connection, device_id: str | None, since: int | None,
          quality: Quality | None) -> int:
    """Logical samples (one per series and ts) at or after `since`, of one device or all."""
    if device_id is None:
        in_series, params = "series_id IN (SELECT id FROM series)", []
    else:
        in_series, params = "series_id IN (SELECT id FROM series WHERE device_id = ?)", [device_id]
    col = {None: "n", Quality.GOOD: "n_good", Quality.BAD: "n_bad"}.get(
        quality, "n - n_good - n_bad")
    lo = since if since is not None else -(2**63)
    total = int(conn.execute(f"SELECT coalesce(sum({col}), 0) FROM chunks WHERE {in_series} "
                             "AND start_ns >= ?", [*params, lo]).fetchone()[0])
    if since is not None:      # chunks that straddle `since`
        for cid, data in conn.execute(
                f"SELECT id, data FROM chunks WHERE {in_series} AND start_ns < ? AND start_ns >= ? "
                "AND end_ns >= ?", [*params, since, _bucket(since), since]):
            b = _in_range(codec.decode(data, f"chunk {cid}"), since, None)
            total += _matching(b, quality)
    until: dict[int, int] | None = None
    for _, rec in recent_by_device(conn, device_id, since, None):
        if until is None:
            until = dict(conn.execute("SELECT id, chunked_until_ns FROM series "
                                      "WHERE chunked_until_ns IS NOT NULL"))
        total += _matching(rec, quality) - _overlap(conn, rec, quality, until)
    return total


def timestamps(conn: sqlite3.Connection, sids: Sequence[int], rec: Block, start: int | None,
               end: int | None, limit: int) -> np.ndarray:
    """Distinct instants of the given series in [start, end), ascending, at most `limit`.

    Chunks are read a bucket at a time in time order, so a long range with a small limit reads
    only the buckets it needs."""
    found = [np.unique(rec.ts)]
    b = None if start is None else _bucket(start)
    while sids:
        # Jump to the next bucket holding a chunk of any of these series (clocks can be wild,
        # so stepping through empty buckets one by one could take forever).
        starts = [r[0] for sid in sids for r in conn.execute(
            "SELECT min(start_ns) FROM chunks WHERE series_id = ? AND start_ns >= ?"
            + ("" if end is None else " AND start_ns < ?"),
            [sid, -(2**63) if b is None else b] + ([] if end is None else [end]))
            if r[0] is not None]
        if not starts:
            break
        b = _bucket(min(starts))
        b_last = min(b + BUCKET_NS - 1, _I64_MAX)
        marks = ",".join("?" * len(sids))
        for cid, data in conn.execute(
                f"SELECT id, data FROM chunks WHERE series_id IN ({marks}) AND start_ns >= ? "
                "AND start_ns <= ?", [*sids, b, b_last]):
            found.append(_in_range(codec.decode(data, f"chunk {cid}"), start, end).ts)
        # Everything further is past this bucket: once `limit` instants lie in or before it,
        # the answer is complete.
        if b_last == _I64_MAX or np.count_nonzero(np.unique(np.concatenate(found)) <= b_last) >= limit:
            break
        b = b_last + 1
    return np.unique(np.concatenate(found))[:limit]


# ---------------------------------------------------------------------- compaction and retention
def pending(conn: sqlite3.Connection) -> int:
    """Samples waiting in `recent`."""
    return int(conn.execute("SELECT coalesce(sum(n), 0) FROM recent").fetchone()[0])


@dataclass
class Compaction:
    """One compaction step: read (under the writer lock), build (no lock), write (one
    transaction). Only compaction and prune change chunks, and the store runs them under one
    lock, so what `read` saw of the chunks still holds when `write` runs."""
    upto: int                                   # recent rows with id <= upto are moved
    blobs: dict[str, list[tuple[int, bytes]]]   # per device, its recent rows in write order
    until: dict[int, int]                       # chunked_until_ns per series
    rows: list[tuple] | None = None             # chunk rows, encoded
    merges: list[tuple[int, Block]] | None = None   # pieces that overlap stored chunks
    moved: int = 0


def compact_read(conn: sqlite3.Connection, max_values: int, last: int) -> Compaction | None:
    """The oldest recent rows (up to id `last`) holding about `max_values` samples, still
    compressed (a step's memory is then a few bytes per value plus one device decoded at a
    time), or None when there are none."""
    ids = conn.execute("SELECT id, n FROM recent WHERE id <= ? ORDER BY id", (last,)).fetchall()
    if not ids:
        return None
    taken, upto = 0, ids[-1][0]
    for rid, n in ids:
        taken += n
        if taken >= max_values:
            upto = rid
            break
    blobs: dict[str, list[tuple[int, bytes]]] = {}
    for rid, device_id, data in conn.execute(
            "SELECT id, device_id, data FROM recent WHERE id <= ? ORDER BY id", (upto,)):
        blobs.setdefault(device_id, []).append((rid, data))
    until = dict(conn.execute("SELECT id, chunked_until_ns FROM series "
                              "WHERE chunked_until_ns IS NOT NULL"))
    return Compaction(upto, blobs, until)


def compact_build(c: Compaction) -> Compaction:
    """Decode, deduplicate and encode the chunks: the CPU work, outside any lock."""
    rows: list[tuple] = []
    merges: list[tuple[int, Block]] = []
    for device_id, blobs in c.blobs.items():
        block = codec.latest_wins(codec.decode_many(
            [data for _, data in blobs], lambda i: f"recent row {blobs[i][0]}"))
        c.moved += len(block)
        if not len(block):
            continue
        assert block.sid is not None
        # Pieces: runs of one series within one bucket (the block is sorted by series and ts).
        bucket = block.ts // BUCKET_NS
        cuts = np.flatnonzero((block.sid[1:] != block.sid[:-1]) | (bucket[1:] != bucket[:-1])) + 1
        starts, sizes = np.r_[0, cuts], np.diff(np.r_[0, cuts, len(block)])
        sids = block.sid[starts].tolist()
        late = np.array([edge is not None and edge >= t0 for edge, t0
                         in zip(map(c.until.get, sids), block.ts[starts].tolist())], dtype=bool)
        if late.any():
            # Late pieces are merged with the chunks they fall in when written.
            merges.extend((sid, block.take(np.arange(lo, lo + n))) for sid, lo, n, is_late
                          in zip(sids, starts.tolist(), sizes.tolist(), late.tolist()) if is_late)
            block = block.take(np.flatnonzero(np.repeat(~late, sizes)))
            sids = [sid for sid, is_late in zip(sids, late.tolist()) if not is_late]
            sizes = sizes[~late]
        rows.extend(_chunk_rows_of(block, sids, sizes))
    c.blobs = {}
    c.rows, c.merges = rows, merges
    return c


def _chunk_rows_of(block: Block, sids: list[int],
                   sizes: np.ndarray) -> list[tuple[int, int, int, int, int, int, bytes]]:
    """Chunk rows of `block` cut in consecutive pieces, piece i of sizes[i] samples of series
    sids[i], all encoded in one pass."""
    if not len(sids):
        return []
    ends = np.cumsum(sizes)
    starts = ends - sizes
    q = block.quality
    good = np.add.reduceat((q == _GOOD).astype(np.int64), starts).tolist()
    bad = np.add.reduceat((q == _BAD).astype(np.int64), starts).tolist()
    return list(zip(sids, block.ts[starts].tolist(), block.ts[ends - 1].tolist(), sizes.tolist(),
                    good, bad, codec.encode_parts(block, ends)))


def compact_write(conn: sqlite3.Connection, c: Compaction) -> int:
    """Store the built chunks and drop the moved recent rows, in the caller's transaction.
    Returns samples moved."""
    assert c.rows is not None and c.merges is not None
    stale: list[int] = []
    rows = c.rows + [_chunk_row(sid, _merge_into_chunks(conn, sid, piece, stale))
                     for sid, piece in c.merges]
    newest: dict[int, int] = {}
    for r in rows:
        newest[r[0]] = max(newest.get(r[0], r[2]), r[2])
    conn.executemany("DELETE FROM chunks WHERE id = ?", [(x,) for x in stale])
    conn.executemany("INSERT INTO chunks (series_id, start_ns, end_ns, n, n_good, n_bad, data) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.executemany("UPDATE series SET chunked_until_ns = max(coalesce(chunked_until_ns, ?), ?) "
                     "WHERE id = ?", [(t, t, sid) for sid, t in newest.items()])
    conn.execute("DELETE FROM recent WHERE id <= ?", (c.upto,))
    return c.moved


def write_chunks(conn: sqlite3.Connection, sid: int, block: Block) -> None:
    """Store a sorted, deduplicated series block as chunks (the migration from the old layout)."""
    rows = [_chunk_row(sid, piece) for piece in _by_bucket(block)]
    conn.executemany("INSERT INTO chunks (series_id, start_ns, end_ns, n, n_good, n_bad, data) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    if len(block):
        conn.execute("UPDATE series SET chunked_until_ns = max(coalesce(chunked_until_ns, ?), ?) "
                     "WHERE id = ?", (int(block.ts[-1]), int(block.ts[-1]), sid))


def prune(conn: sqlite3.Connection, device_id: str, limit_ns: int) -> int:
    """Delete the device's chunked samples before `limit_ns`; returns samples deleted."""
    deleted = 0
    gone, rewrite = [], []
    for cid, sid, end_ns, n, data in conn.execute(
            "SELECT id, series_id, end_ns, n, data FROM chunks WHERE series_id IN "
            "(SELECT id FROM series WHERE device_id = ?) AND start_ns < ?", (device_id, limit_ns)):
        if end_ns < limit_ns:
            gone.append((cid,))
            deleted += n
        else:
            kept = _in_range(codec.decode(data, f"chunk {cid}"), limit_ns, None)
            deleted += n - len(kept)
            rewrite.append((*_chunk_row(sid, kept)[1:], cid))
    conn.executemany("DELETE FROM chunks WHERE id = ?", gone)
    conn.executemany("UPDATE chunks SET start_ns = ?, end_ns = ?, n = ?, n_good = ?, n_bad = ?, "
                     "data = ? WHERE id = ?", rewrite)
    return deleted


# ---------------------------------------------------------------------- helpers
def _recent_where(device_id: str | None, start: int | None, end: int | None) -> tuple[str, list]:
    where, params = ["1"], []
    if device_id is not None:
        where.append("device_id = ?")
        params.append(device_id)
    if start is not None:
        where.append("max_ts >= ?")
        params.append(start)
    if end is not None:
        where.append("min_ts < ?")
        params.append(end)
    return " AND ".join(where), params


def _chunk_rows(conn: sqlite3.Connection, sid: int, start: int | None,
                end: int | None) -> sqlite3.Cursor:
    # A chunk lies within one bucket, so none starting before start's bucket can reach start.
    where, params = ["series_id = ?"], [sid]
    if start is not None:
        where.append("start_ns >= ?")
        params.append(_bucket(start))
    if end is not None:
        where.append("start_ns < ?")
        params.append(end)
    return conn.execute(f"SELECT id, data FROM chunks WHERE {' AND '.join(where)} ORDER BY start_ns",
                        params)


def _in_range(b: Block, start: int | None, end: int | None) -> Block:
    if not len(b) or ((start is None or b.ts.min() >= start) and (end is None or b.ts.max() < end)):
        return b
    keep = np.ones(len(b), dtype=bool)
    if start is not None:
        keep &= b.ts >= start
    if end is not None:
        keep &= b.ts < end
    return b.take(np.flatnonzero(keep))


def _matching(b: Block, quality: Quality | None) -> int:
    if quality is None:
        return len(b)
    return int(np.count_nonzero(b.quality == int(quality)))


def _overlap(conn: sqlite3.Connection, rec: Block, quality: Quality | None,
             until: dict[int, int]) -> int:
    """Recent samples that replace a chunked one: counted twice above, once too many (when the
    chunked one matched the quality filter). `until`: chunked_until_ns per series."""
    if not len(rec):
        return 0
    twice = 0
    for sid, part in split_by_series(rec).items():
        edge = until.get(sid)
        if edge is None or part.ts[0] > edge:
            continue                    # the usual case: recent samples are newer than chunks
        ts = part.ts[part.ts <= edge]
        last = int(ts[-1])
        old = series(conn, sid, None, int(ts[0]), None if last == _I64_MAX else last + 1)
        hit = np.isin(old.ts, ts)
        if quality is not None:
            hit &= old.quality == int(quality)
        twice += int(np.count_nonzero(hit))
    return twice


def _bucket(ts: int) -> int:
    # Clamped: the bucket of a timestamp near the int64 minimum would not bind as an INTEGER.
    return max(ts // BUCKET_NS * BUCKET_NS, -(2**63))


def _by_bucket(b: Block) -> Iterator[Block]:
    """Pieces of a sorted series block, each within one bucket."""
    if not len(b):
        return
    keys = b.ts // BUCKET_NS
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    if not len(cuts):
        yield b
        return
    for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(b)].tolist()):
        yield b.take(np.arange(lo, hi))


def _merge_into_chunks(conn: sqlite3.Connection, sid: int, piece: Block, stale: list[int]) -> Block:
    """`piece` merged with the chunks of its bucket it overlaps (they go on `stale`): a late
    sample never leaves two chunks of a series covering the same time."""
    lo, hi = int(piece.ts[0]), int(piece.ts[-1])
    b = _bucket(lo)
    old = []
    for cid, data in conn.execute(
            "SELECT id, data FROM chunks WHERE series_id = ? AND start_ns >= ? AND start_ns <= ? "
            "AND end_ns >= ? ORDER BY start_ns", (sid, b, hi, lo)):
        old.append(codec.decode(data, f"chunk {cid}"))
        stale.append(cid)
    if not old:
        return piece
    return codec.latest_wins(codec.concat(old + [piece]))


def _chunk_row(sid: int, b: Block) -> tuple[int, int, int, int, int, int, bytes]:
    q = b.quality
    return (sid, int(b.ts[0]), int(b.ts[-1]), len(b), int(np.count_nonzero(q == _GOOD)),
            int(np.count_nonzero(q == _BAD)), codec.encode(b))


def prune_device(conn: sqlite3.Connection, device_id: str, cutoff_ns: int, stale_ns: int) -> int:
    """Retention for one device: raw samples older than `cutoff_ns`, but never those a roll-up
    may still need (before its watermark or a late sample waiting, less two stale windows)."""
    row = conn.execute("SELECT watermark_ns, dirty_from_ns FROM rollup_progress WHERE device_id = ?",
                       (device_id,)).fetchone()
    if row is None or row[0] is None:
        return 0
    watermark, dirty_from = row
    safe = watermark if dirty_from is None else min(watermark, dirty_from)
    # Roll-ups back off stale_after_s before the watermark and need the readings just before that.
    limit_ns = min(cutoff_ns, safe - 2 * stale_ns)
    deleted = prune(conn, device_id, limit_ns)
    conn.execute("UPDATE rollup_progress SET pruned_before_ns = max(coalesce(pruned_before_ns, ?), ?) "
                 "WHERE device_id = ?", (limit_ns, limit_ns, device_id))
    return deleted
