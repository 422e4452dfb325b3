"""The evidence ledger's digest of one committed samples batch (docs/evidence.md, "Raw samples").

It hashes the columns the store has just built for the batch's `recent` rows (the
edge.store.codec block of the whole write) instead of re-encoding every row as JSON: timestamps,
kinds and value bits are numpy arrays already, and each series' name is hashed once per store,
so a batch costs a few array copies and one sha256 pass, not a Python step per sample. The
encoding is defined on the rows alone (no store-local series ids, no compression, whose bytes
depend on the zlib build), so another implementation can recompute it from the same samples:

    samples in store order: grouped by device_id, devices in the order they first appear in
    the batch, each device's samples in batch order; n of them, m of them with a str value

    batch_digest = sha256( b"SYB1" | u32 n | u32 m
        | n x 32 bytes  series: sha256(strtab(device_id, signal)) of each sample
        | n x i64       ts_ns
        | n x u8        kind << 2 | quality          kind: 0 float, 1 int, 2 bool, 3 str
        | n x i64       value bits: a float's IEEE 754 binary64 bits; an int itself; a bool 0
                        or 1; a str its index among the batch's str values, in store order
        | strtab(the m str values in store order) )

    strtab(s_1 ... s_j) = j x u32 byte length of UTF-8(s_i), then UTF-8(s_1) ... UTF-8(s_j)

All integers little-endian. A NaN hashes with the payload it was given (its bits), and 1, 1.0
and True are three different values, as the store keeps them.
"""
from __future__ import annotations

import hashlib
import struct
from typing import Mapping, Sequence

import numpy as np

from ..model import Sample
from . import codec
from .codec import Block

TAG = b"SYB1"
_HEADER = struct.Struct("<4sII")
_TWO_LENGTHS = struct.Struct("<II")
_U32 = np.dtype("<u4")
_I64 = np.dtype("<i8")


def series_hash(device_id: str, signal: str) -> bytes:
    """sha256(strtab(device_id, signal))."""
    d, s = device_id.encode("utf-8"), signal.encode("utf-8")
    return hashlib.sha256(_TWO_LENGTHS.pack(len(d), len(s)) + d + s).digest()


def strtab(utf8: Sequence[bytes]) -> bytes:
    return np.fromiter(map(len, utf8), dtype=_U32, count=len(utf8)).tobytes() + b"".join(utf8)


class SeriesHashes:
    """series_hash of every series id met, in an array indexed by id: the batch's series column
    is one gather. Ids are the store's; after a rolled-back write an id may come back naming
    another series, so the ledger calls `clear()` then."""

    # Ids are dense (SQLite rowids of `series`), so the array is as long as the store has
    # series; an id past this (a store edited by hand) is looked up one by one instead of
    # growing the array to it.
    MAX_ARRAY_IDS = 1 << 18

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._hash = np.zeros((0, 32), dtype=np.uint8)
        self._known = np.zeros(0, dtype=bool)
        self._sparse: dict[int, bytes] = {}

    def column(self, sid: np.ndarray, key_of: Mapping[int, tuple[str, str]]) -> bytes:
        if not len(sid):
            return b""
        top = int(sid.max())
        if top >= self.MAX_ARRAY_IDS:
            return b"".join([self._one(s, key_of) for s in sid.tolist()])
        if top >= len(self._known):
            size = min(max(top + 1, 2 * len(self._known)), self.MAX_ARRAY_IDS)
            grown, known = np.zeros((size, 32), dtype=np.uint8), np.zeros(size, dtype=bool)
            grown[:len(self._known)] = self._hash
            known[:len(self._known)] = self._known
            self._hash, self._known = grown, known
        known = self._known[sid]
        if not known.all():
            for s in set(sid[~known].tolist()):
                self._hash[s] = np.frombuffer(series_hash(*key_of[s]), dtype=np.uint8)
                self._known[s] = True
        return self._hash[sid].tobytes()

    def _one(self, sid: int, key_of: Mapping[int, tuple[str, str]]) -> bytes:
        h = self._sparse.get(sid)
        if h is None:
            h = self._sparse[sid] = series_hash(*key_of[sid])
        return h


def digest_block(block: Block, key_of: Mapping[int, tuple[str, str]],
                 series: SeriesHashes) -> bytes:
    """The digest of a batch given as the store's block for it (edge.store.samples.insert):
    samples in store order, its `sid` column the store's series ids, named by `key_of`."""
    assert block.sid is not None
    return hashlib.sha256(b"".join((
        _HEADER.pack(TAG, len(block), len(block.strs)),
        series.column(block.sid, key_of),
        block.ts.astype(_I64, copy=False).tobytes(),
        block.kq.tobytes(),
        block.bits.astype(_I64, copy=False).tobytes(),
        strtab([s.encode("utf-8") for s in block.strs]),
    ))).digest()


def batch_digest(samples: Sequence[Sample]) -> bytes:
    """The digest of a batch from its rows, as the store computes it when it commits them."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.device_id, []).append(s)
    ordered = [s for group in groups.values() for s in group]
    ids: dict[tuple[str, str], int] = {}
    sid = [ids.setdefault((s.device_id, s.signal), len(ids)) for s in ordered]
    block = codec.from_columns([s.ts_ns for s in ordered], [s.value for s in ordered],
                               [int(s.quality) for s in ordered], sid)
    return digest_block(block, {v: k for k, v in ids.items()}, SeriesHashes())
