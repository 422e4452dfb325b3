"""Blocks of samples as compact blobs: the unit the raw-sample tables store.

A Block is columns of numpy arrays (optionally a series id per sample, the timestamp, one byte of
kind and quality, 64 value bits) plus the strings its str values point into. On disk the int64
columns are delta-encoded (consecutive timestamps and slowly-moving readings become small
numbers), byte-shuffled (the high bytes of every value end up next to each other, mostly zeros)
and zlib-compressed: a 16-bit reading costs a few bytes instead of a row, which is what keeps the
bytes written per value low.

Value kinds keep the store's round-trip promise: ints stay ints, floats floats (NaN included, as
bits), bools bools, strings strings.

The store writes and compacts many small blobs at once (a write: one per device; a compaction:
one per series and hour), so the hot paths work on all of them together: `encode_parts` encodes
every part of a block in one vectorised pass, `decode_many` decodes many blobs in one, and
`from_columns`/`Block.values` convert a column without a Python step per value. Each blob is an
ordinary zlib stream whatever window it was written with; a blob's string table may hold
strings its samples do not use (compaction before the vectorised paths kept a device's whole
table in each chunk): only the indices say which string a sample has.
"""
from __future__ import annotations

import json
import operator
import struct
import zlib
from dataclasses import dataclass
from itertools import chain
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import StoreError

FORMAT = 1
FLOAT, INT, BOOL, STR = 0, 1, 2, 3
_HEADER = struct.Struct("<BIIB")     # format, samples, string bytes, has series ids
_ZLIB_LEVEL = 1                      # level 1 gets most of the gain for a fraction of the CPU
_KIND_OF_TYPE = {float: FLOAT, int: INT, bool: BOOL, str: STR}
# json.dumps(strs, ensure_ascii=False), without building an encoder per call.
_strs_json = json.JSONEncoder(ensure_ascii=False).encode


@dataclass
class Block:
    ts: np.ndarray                   # int64 ns
    kq: np.ndarray                   # uint8: kind << 2 | quality
    bits: np.ndarray                 # int64: the int, 0/1, float64 bits, or index into strs
    strs: list[str]
    sid: np.ndarray | None = None    # int64 series ids (recent blocks hold several series)

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def quality(self) -> np.ndarray:
        return self.kq & 3

    def take(self, idx: np.ndarray) -> "Block":
        return Block(self.ts[idx], self.kq[idx], self.bits[idx], self.strs,
                     None if self.sid is None else self.sid[idx])

    def values(self) -> list[Any]:
        """The values as Python objects, in order."""
        kinds = self.kq >> 2
        if not kinds.any():
            return self.bits.view(np.float64).tolist()
        # Assigning a numeric array into an object array makes Python floats, ints and bools.
        out = np.empty(len(self), dtype=object)
        is_float, is_bool, is_str = kinds == FLOAT, kinds == BOOL, kinds == STR
        out[is_float] = self.bits[is_float].view(np.float64)
        out[is_bool] = self.bits[is_bool] != 0
        if is_str.any():
            table = np.empty(len(self.strs), dtype=object)
            table[:] = self.strs
            out[is_str] = table[self.bits[is_str]]
        is_int = ~(is_float | is_bool | is_str)
        out[is_int] = self.bits[is_int]
        return out.tolist()


def empty() -> Block:
    return Block(np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0, np.int64), [])


def from_columns(ts: Sequence[int], values: Sequence[Any], quality: Sequence[int],
                 sid: Sequence[int] | None = None) -> Block:
    """A Block from Python columns (values already validated by edge.store.sample_problem)."""
    try:
        # Values of exactly float, int, bool or str (all but odd subclasses): their kinds in one
        # C-level pass and each kind's bits in one numpy call, not a Python step per value.
        kinds = np.array(list(map(_KIND_OF_TYPE.get, map(type, values))), dtype=np.uint8)
    except TypeError:      # a None kind: some value is of another type
        return _from_columns_each(ts, values, quality, sid)
    n = len(kinds)
    strs: list[str] = []
    if not kinds.any():
        bits = np.array(values, dtype=np.float64).view(np.int64)
    else:
        bits = np.zeros(n, dtype=np.int64)
        pos = np.flatnonzero(kinds == FLOAT)
        if len(pos):
            bits[pos] = np.array(_pick(values, pos), dtype=np.float64).view(np.int64)
        pos = np.flatnonzero((kinds == INT) | (kinds == BOOL))
        if len(pos):
            bits[pos] = np.array(_pick(values, pos), dtype=np.int64)
        pos = np.flatnonzero(kinds == STR)
        if len(pos):
            strs = _pick(values, pos)
            bits[pos] = np.arange(len(pos))
    kq = (kinds << 2) | np.array(quality, dtype=np.uint8)
    return Block(np.array(ts, dtype=np.int64), kq, bits, strs,
                 None if sid is None else np.array(sid, dtype=np.int64))


def _pick(values: Sequence[Any], pos: np.ndarray) -> list[Any]:
    if len(pos) == 1:
        return [values[int(pos[0])]]
    return list(operator.itemgetter(*pos.tolist())(values))


def _from_columns_each(ts: Sequence[int], values: Sequence[Any], quality: Sequence[int],
                       sid: Sequence[int] | None) -> Block:
    """from_columns for any values: subclasses of int, float, bool and str are taken as those."""
    n = len(ts)
    kinds = bytearray(n)            # FLOAT is 0: floats need no entry
    ints = [0] * n
    fpos: list[int] = []
    fval: list[float] = []
    strs: list[str] = []
    for i, v in enumerate(values):
        t = type(v)
        if t is float:
            fpos.append(i)
            fval.append(v)
        elif t is int:
            kinds[i] = INT
            ints[i] = v
        elif t is bool:
            kinds[i] = BOOL
            ints[i] = int(v)
        elif isinstance(v, bool):
            kinds[i] = BOOL
            ints[i] = int(v)
        elif isinstance(v, int):
            kinds[i] = INT
            ints[i] = int(v)
        elif isinstance(v, float):
            fpos.append(i)
            fval.append(float(v))
        else:
            kinds[i] = STR
            ints[i] = len(strs)
            strs.append(str(v))
    bits = np.array(ints, dtype=np.int64)
    if fpos:
        bits[fpos] = np.array(fval, dtype=np.float64).view(np.int64)
    kq = (np.frombuffer(bytes(kinds), dtype=np.uint8) << 2) | np.array(quality, dtype=np.uint8)
    return Block(np.array(ts, dtype=np.int64), kq, bits, strs,
                 None if sid is None else np.array(sid, dtype=np.int64))


def split(block: Block, ends: Sequence[int]) -> list[Block]:
    """`block` cut before each of `ends` (ascending, the last one len(block)), each part with
    its own string table: the inverse of `concat`."""
    parts = []
    lo = 0
    is_str = (block.kq >> 2) == STR if block.strs else None
    for hi in ends:
        part = Block(block.ts[lo:hi], block.kq[lo:hi], block.bits[lo:hi], [],
                     None if block.sid is None else block.sid[lo:hi])
        if is_str is not None:
            mine = np.flatnonzero(is_str[lo:hi])
            if len(mine):
                # A block's string indices count up in sample order: this part's are a run.
                first = int(part.bits[mine[0]])
                part.strs = block.strs[first:first + len(mine)]
                part.bits = part.bits.copy()
                part.bits[mine] -= first
        parts.append(part)
        lo = hi
    return parts


def concat(blocks: Sequence[Block]) -> Block:
    """One block of `blocks` in order (their string tables joined)."""
    if len(blocks) == 1:
        return blocks[0]
    if not blocks:
        return empty()
    strs: list[str] = []
    bits = []
    for b in blocks:
        if b.strs:
            shifted = b.bits.copy()
            is_str = (b.kq >> 2) == STR
            shifted[is_str] += len(strs)
            strs.extend(b.strs)
            bits.append(shifted)
        else:
            bits.append(b.bits)
    has_sid = all(b.sid is not None for b in blocks)
    return Block(np.concatenate([b.ts for b in blocks]), np.concatenate([b.kq for b in blocks]),
                 np.concatenate(bits), strs,
                 np.concatenate([b.sid for b in blocks]) if has_sid else None)  # type: ignore[misc]


def latest_wins(block: Block) -> Block:
    """Sorted by (series, ts), one sample per (series, ts): the one latest in `block`'s order.

    This is how a redelivered sample replaces the stored one: blocks are concatenated oldest
    write first, so among equal keys the last position is the newest write."""
    n = len(block)
    if n == 0:
        return block
    pos = np.arange(n)
    keys = (pos, block.ts) if block.sid is None else (pos, block.ts, block.sid)
    order = np.lexsort(keys)
    ts = block.ts[order]
    last = np.ones(n, dtype=bool)
    same = ts[1:] == ts[:-1]
    if block.sid is not None:
        sid = block.sid[order]
        same &= sid[1:] == sid[:-1]
    last[:-1] = ~same
    return block.take(order[last])


def encode(block: Block) -> bytes:
    return encode_parts(block, [len(block)])[0]


def encode_parts(block: Block, ends: Sequence[int]) -> list[bytes]:
    """The blob of each part of `block` cut before each of `ends` (ascending, the last one
    len(block)), as `encode` of that part alone would store it, in one vectorised pass over the
    columns: numpy's per-call cost, not the samples, is most of a ten-sample part's. A part's
    string table holds the distinct strings its samples use, in the order they first do."""
    if not len(ends):
        return []
    parts = _Parts(np.asarray(ends, dtype=np.int64))
    bits, tables = _part_strings(block, parts)
    ts = parts.shuffle(parts.delta(block.ts))
    vals = parts.shuffle(parts.delta(bits))
    kq = block.kq.tobytes()
    sid = None if block.sid is None else parts.shuffle(parts.delta(block.sid).astype(np.int32))
    out = []
    for lo, hi, table in zip(parts.starts.tolist(), parts.ends.tolist(), tables):
        strs = _strs_json(table).encode("utf-8") if table else b""
        head = _HEADER.pack(FORMAT, hi - lo, len(strs), sid is not None)
        if sid is None:
            raw = b"".join((head, ts[8 * lo:8 * hi], vals[8 * lo:8 * hi], kq[lo:hi], strs))
        else:
            raw = b"".join((head, ts[8 * lo:8 * hi], vals[8 * lo:8 * hi], kq[lo:hi],
                            sid[4 * lo:4 * hi], strs))
        out.append(_compress(raw))
    return out


def _compress(raw: bytes) -> bytes:
    # zlib's default window (32 KiB) and hash table (memLevel 8) take ~10-60 µs per stream to
    # allocate and clear, several times the deflate of a few hundred bytes: a window just past
    # the data finds the same matches at a fraction of the set-up. Any zlib reads the result.
    wbits = min(15, max(9, (len(raw) + 262).bit_length()))
    c = zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, wbits, min(8, wbits - 7))
    return c.compress(raw) + c.flush()


class _Parts:
    """Consecutive parts of a block's columns, for delta and shuffle within each part at once."""

    def __init__(self, ends: np.ndarray) -> None:
        self.ends = ends
        self.starts = np.zeros_like(ends)
        self.starts[1:] = ends[:-1]
        self.lens = ends - self.starts
        self.n = int(ends[-1])
        self._per_sample: tuple[np.ndarray, np.ndarray] | None = None

    def per_sample(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, length) of each sample's part."""
        if self._per_sample is None:
            self._per_sample = (np.repeat(self.starts, self.lens), np.repeat(self.lens, self.lens))
        return self._per_sample

    def delta(self, a: np.ndarray) -> np.ndarray:
        # int64 arithmetic wraps, and the reader's cumsum wraps back the same way: lossless.
        out = np.empty_like(a)
        if self.n:
            out[0] = a[0]
            np.subtract(a[1:], a[:-1], out=out[1:])
            first = self.starts[self.lens > 0]
            out[first] = a[first]
        return out

    def shuffle(self, a: np.ndarray) -> bytes:
        """Each part's values byte-plane by byte-plane (all first bytes, then all second...),
        the parts one after the other: part p's are [itemsize * start, itemsize * end)."""
        size = a.itemsize
        if len(self.lens) == 1:
            return a.view(np.uint8).reshape(-1, size).T.tobytes()
        if self.n and (self.lens == self.lens[0]).all():
            # Parts of one length (a write's devices, a compaction's series): one transpose.
            return a.view(np.uint8).reshape(len(self.lens), -1, size).transpose(0, 2, 1).tobytes()
        start, length = self.per_sample()
        # byte j of sample g (at i = g - start in its part of length L): size*start + j*L + i
        first = (size - 1) * start + np.arange(self.n)
        dest = first[:, None] + np.arange(size)[None, :] * length[:, None]
        out = np.empty(self.n * size, dtype=np.uint8)
        out[dest] = a.view(np.uint8).reshape(-1, size)
        return out.tobytes()


def _part_strings(block: Block, parts: _Parts) -> tuple[np.ndarray, list[list[str]]]:
    """(bits with each str sample's index into its part's table, the tables)."""
    tables: list[list[str]] = [[] for _ in range(len(parts.ends))]
    if not block.strs:
        return block.bits, tables
    at = np.flatnonzero((block.kq >> 2) == STR)
    if not len(at):
        return block.bits, tables
    strs = block.strs
    index: dict[tuple[int, str], int] = {}
    local = []
    for p, k in zip(np.searchsorted(parts.ends, at, side="right").tolist(), block.bits[at].tolist()):
        s = strs[k]
        j = index.get((p, s))
        if j is None:
            table = tables[p]
            j = index[(p, s)] = len(table)
            table.append(s)
        local.append(j)
    bits = block.bits.copy()
    bits[at] = local
    return bits, tables


def decode(blob: bytes, where: str) -> Block:
    """The Block in `blob`; StoreError naming `where` when it is not one we wrote."""
    try:
        raw = zlib.decompress(blob)
        fmt, n, nstr, has_sid = _HEADER.unpack_from(raw)
        if fmt != FORMAT:
            raise ValueError(f"block format {fmt}, this shangyun reads {FORMAT}")
        at = _HEADER.size
        ts = _undelta(_unshuffle(raw, at, n, np.int64))
        at += 8 * n
        bits = _undelta(_unshuffle(raw, at, n, np.int64))
        at += 8 * n
        kq = np.frombuffer(raw, dtype=np.uint8, count=n, offset=at).copy()
        at += n
        sid = None
        if has_sid:
            sid = _undelta(_unshuffle(raw, at, n, np.int32).astype(np.int64))
            at += 4 * n
        strs = json.loads(raw[at:at + nstr].decode("utf-8")) if nstr else []
        if at + nstr != len(raw):
            raise ValueError("trailing bytes")
    except (zlib.error, struct.error, ValueError) as exc:
        raise StoreError(f"raw samples {where} cannot be read ({exc}): the store is damaged; "
                         "restore it from a backup") from exc
    return Block(ts, kq, bits, strs, sid)


_SLAB = 1 << 16              # samples decoded per vectorised pass: bounds its index arrays
# Samples per blob from which decoding blob by blob costs less than the vectorised gather
# (measured: 10 per blob 5x less, 80 even, 200 twice more).
_ROW_BY_ROW = 96
_STRS_SEEN: dict[bytes, list[str]] = {}    # string tables recur (a state's name, row after row)


def decode_many(blobs: Sequence[bytes], where: Callable[[int], str]) -> Block:
    """concat(decode(blobs[i], where(i)) for each i), in one vectorised pass per slab of rows
    instead of a dozen numpy calls per row; the same StoreError for a damaged blob."""
    if len(blobs) <= 1:
        return _decode_each(blobs, where)
    try:
        raws = list(map(zlib.decompress, blobs))
        heads = list(map(_HEADER.unpack_from, raws))
    except (zlib.error, struct.error):
        return _decode_each(blobs, where)      # which raises, naming the damaged blob
    fmt, ns, nstr, has_sid = (np.array(col, dtype=np.int64) for col in zip(*heads))
    if int(ns.sum()) >= _ROW_BY_ROW * len(raws):
        return _decode_each(blobs, where)      # big rows (chunks): their own reshapes are cheaper
    sizes = np.fromiter(map(len, raws), dtype=np.int64, count=len(raws))
    with_sid = bool(has_sid[0])
    if ((fmt != FORMAT).any() or ((has_sid != 0) != with_sid).any()
            or (sizes != _HEADER.size + (21 if with_sid else 17) * ns + nstr).any()):
        return _decode_each(blobs, where)      # damaged, or rows with and without series ids
    tables = _tables(raws, nstr)
    if tables is None:
        return _decode_each(blobs, where)
    # Slabs of about _SLAB samples bound the index arrays (a few dozen bytes per sample).
    cuts = np.searchsorted(np.cumsum(ns), np.arange(_SLAB, int(ns.sum()), _SLAB), side="right")
    bounds = [0, *sorted(set(cuts.tolist()) - {0, len(raws)}), len(raws)]
    return concat([_decode_slab(raws[lo:hi], ns[lo:hi], sizes[lo:hi], tables[lo:hi], with_sid)
                   for lo, hi in zip(bounds, bounds[1:])])


def _decode_each(blobs: Sequence[bytes], where: Callable[[int], str]) -> Block:
    return concat([decode(blob, where(i)) for i, blob in enumerate(blobs)])


def _tables(raws: list[bytes], nstr: np.ndarray) -> list[list[str]] | None:
    """Each row's string table (the JSON at its end), None when one does not parse."""
    tables: list[list[str]] = [[]] * len(raws)     # the empty ones shared: never mutated
    rows = np.flatnonzero(nstr).tolist()
    if not rows:
        return tables
    texts = [raws[i][-k:] for i, k in zip(rows, nstr[rows].tolist())]
    for i, text, seen in zip(rows, texts, map(_STRS_SEEN.get, texts)):
        if seen is None:
            try:
                seen = json.loads(text.decode("utf-8"))
            except ValueError:
                return None
            if len(_STRS_SEEN) >= 4096:
                _STRS_SEEN.clear()
            _STRS_SEEN[text] = seen
        tables[i] = seen
    return tables


def _decode_slab(raws: list[bytes], ns: np.ndarray, sizes: np.ndarray, tables: list[list[str]],
                 with_sid: bool) -> Block:
    buf = np.frombuffer(b"".join(raws), dtype=np.uint8)
    total = int(ns.sum())
    starts = np.cumsum(ns) - ns
    row = np.repeat(np.arange(len(raws)), ns)
    n = ns[row]
    # Byte 0 of each sample's timestamp: its row's offset, the header, its place in the row.
    at = (np.cumsum(sizes) - sizes + _HEADER.size)[row] + (np.arange(total) - starts[row])
    planes = at[:, None] + np.arange(8)[None, :] * n[:, None]
    ts = _undelta_rows(buf[planes].view(np.int64).ravel(), starts, row)
    bits = _undelta_rows(buf[planes + 8 * n[:, None]].view(np.int64).ravel(), starts, row)
    kq = buf[at + 16 * n]
    sid = None
    if with_sid:
        planes = (at + 17 * n)[:, None] + np.arange(4)[None, :] * n[:, None]
        sid = _undelta_rows(buf[planes].view(np.int32).ravel().astype(np.int64), starts, row)
    strs: list[str] = []
    if any(tables):
        counts = np.fromiter(map(len, tables), dtype=np.int64, count=len(tables))
        strs = list(chain.from_iterable(tables))
        # As concat does: a row's str indices move past the strings of the rows before it.
        is_str = ((kq >> 2) == STR) & (counts > 0)[row]
        bits[is_str] += (np.cumsum(counts) - counts)[row[is_str]]
    return Block(ts, kq, bits, strs, sid)


def _undelta_rows(d: np.ndarray, starts: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Each row's running sum of its deltas (int64 wraps both ways: lossless)."""
    run = np.cumsum(d, dtype=d.dtype)
    before = np.concatenate((np.zeros(1, dtype=d.dtype), run))[starts]
    return run - before[row]


def _undelta(a: np.ndarray) -> np.ndarray:
    return np.cumsum(a, dtype=a.dtype)


def _unshuffle(raw: bytes, offset: int, n: int, dtype: Any) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    planes = np.frombuffer(raw, dtype=np.uint8, count=n * size, offset=offset).reshape(size, n)
    return np.ascontiguousarray(planes.T).view(dtype).ravel()
