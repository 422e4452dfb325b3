"""The raw-sample codec and compaction as shangyun wrote them before the vectorised write path
(commit 9a9240b), kept as the oracle of the tests: what they built, the new code must build
too, and what they stored, the new code must read back the same.

Blobs written by this encoder differ from today's in their bytes (zlib's default window, and
chunks that carry their whole device's string table), not in what they hold."""
from __future__ import annotations

import json
import struct
import zlib
from typing import Any, Sequence

import numpy as np

from edge.store import codec
from edge.store import samples as raw
from edge.store.codec import BOOL, FLOAT, INT, STR, Block

_HEADER = struct.Struct("<BIIB")


def from_columns(ts: Sequence[int], values: Sequence[Any], quality: Sequence[int],
                 sid: Sequence[int] | None = None) -> Block:
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


def values(block: Block) -> list[Any]:
    kinds = block.kq >> 2
    if not kinds.any():
        return block.bits.view(np.float64).tolist()
    out = block.bits.tolist()
    floats = np.flatnonzero(kinds == FLOAT)
    if len(floats):
        for i, v in zip(floats.tolist(), block.bits[floats].view(np.float64).tolist()):
            out[i] = v
    for i in np.flatnonzero(kinds == BOOL).tolist():
        out[i] = bool(out[i])
    for i in np.flatnonzero(kinds == STR).tolist():
        out[i] = block.strs[out[i]]
    return out


def encode(block: Block) -> bytes:
    strs = json.dumps(block.strs, ensure_ascii=False).encode("utf-8") if block.strs else b""
    parts = [_HEADER.pack(1, len(block), len(strs), block.sid is not None),
             _shuffle(_delta(block.ts)), _shuffle(_delta(block.bits)), block.kq.tobytes()]
    if block.sid is not None:
        parts.append(_shuffle(_delta(block.sid).astype(np.int32)))
    parts.append(strs)
    return zlib.compress(b"".join(parts), 1)


def encode_parts(block: Block, ends: Sequence[int]) -> list[bytes]:
    """What it stored where today's code calls encode_parts: a write's rows (codec.split, then
    one encode per device), or one block (encode: chunks merged with late samples, pruned)."""
    if len(ends) == 1:
        return [encode(block)]
    return [encode(part) for part in codec.split(block, list(ends))]


def compact_build(c: raw.Compaction) -> raw.Compaction:
    """Compaction's CPU step as it was: a chunk keeps its whole device's string table."""
    rows: list[tuple] = []
    merges: list[tuple[int, Block]] = []
    for blobs in c.blobs.values():
        block = codec.latest_wins(codec.concat(
            [codec.decode(data, f"recent row {rid}") for rid, data in blobs]))
        c.moved += len(block)
        for sid, part in raw.split_by_series(block).items():
            edge = c.until.get(sid)
            for piece in raw._by_bucket(part):
                if edge is not None and edge >= int(piece.ts[0]):
                    merges.append((sid, piece))
                else:
                    q = piece.quality
                    rows.append((sid, int(piece.ts[0]), int(piece.ts[-1]), len(piece),
                                 int(np.count_nonzero(q == 0)), int(np.count_nonzero(q == 2)),
                                 encode(piece)))
    c.blobs = {}
    c.rows, c.merges = rows, merges
    return c


def _delta(a: np.ndarray) -> np.ndarray:
    out = np.empty_like(a)
    if len(a):
        out[0] = a[0]
        np.subtract(a[1:], a[:-1], out=out[1:])
    return out


def _shuffle(a: np.ndarray) -> bytes:
    return a.view(np.uint8).reshape(-1, a.itemsize).T.tobytes()
