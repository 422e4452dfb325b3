"""Blocks of samples as compact blobs: the unit the raw-sample tables store.

A Block is columns of numpy arrays (optionally a series id per sample, the timestamp, one byte of
kind and quality, 64 value bits) plus the strings its str values point into. On disk the int64
columns are delta-encoded (consecutive timestamps and slowly-moving readings become small
numbers), byte-shuffled (the high bytes of every value end up next to each other, mostly zeros)
and zlib-compressed: a 16-bit reading costs a few bytes instead of a row, which is what keeps the
bytes written per value low.

Value kinds keep the store's round-trip promise: ints stay ints, floats floats (NaN included, as
bits), bools bools, strings strings.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import StoreError

FORMAT = 1
FLOAT, INT, BOOL, STR = 0, 1, 2, 3
_HEADER = struct.Struct("<BIIB")     # format, samples, string bytes, has series ids
_ZLIB_LEVEL = 1                      # level 1 gets most of the gain for a fraction of the CPU


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
        out = self.bits.tolist()
        floats = np.flatnonzero(kinds == FLOAT)
        if len(floats):
            fv = self.bits[floats].view(np.float64).tolist()
            for i, v in zip(floats.tolist(), fv):
                out[i] = v
        for i in np.flatnonzero(kinds == BOOL).tolist():
            out[i] = bool(out[i])
        for i in np.flatnonzero(kinds == STR).tolist():
            out[i] = self.strs[out[i]]
        return out


def empty() -> Block:
    return Block(np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0, np.int64), [])


def from_columns(ts: Sequence[int], values: Sequence[Any], quality: Sequence[int],
                 sid: Sequence[int] | None = None) -> Block:
    """A Block from Python columns (values already validated by edge.store.sample_problem)."""
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
    strs = json.dumps(block.strs, ensure_ascii=False).encode("utf-8") if block.strs else b""
    parts = [_HEADER.pack(FORMAT, len(block), len(strs), block.sid is not None),
             _shuffle(_delta(block.ts)), _shuffle(_delta(block.bits)), block.kq.tobytes()]
    if block.sid is not None:
        parts.append(_shuffle(_delta(block.sid).astype(np.int32)))
    parts.append(strs)
    return zlib.compress(b"".join(parts), _ZLIB_LEVEL)


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


def _delta(a: np.ndarray) -> np.ndarray:
    # int64 arithmetic wraps, and _undelta's cumsum wraps back the same way: lossless.
    out = np.empty_like(a)
    if len(a):
        out[0] = a[0]
        np.subtract(a[1:], a[:-1], out=out[1:])
    return out


def _undelta(a: np.ndarray) -> np.ndarray:
    return np.cumsum(a, dtype=a.dtype)


def _shuffle(a: np.ndarray) -> bytes:
    return a.view(np.uint8).reshape(-1, a.itemsize).T.tobytes()


def _unshuffle(raw: bytes, offset: int, n: int, dtype: Any) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    planes = np.frombuffer(raw, dtype=np.uint8, count=n * size, offset=offset).reshape(size, n)
    return np.ascontiguousarray(planes.T).view(dtype).ravel()
