"""The evidence ledger's digest of one committed samples batch (docs/evidence.md, "Raw samples").

It hashes the columns the store has just built for the batch's `recent` rows (edge.store.codec
blocks, one per device) instead of re-encoding every row as JSON: the timestamps, kinds and
value bits are numpy arrays already, so the digest costs a few array copies and one lookup per
distinct series, not a Python step per sample. The encoding is defined on the rows alone (no
store-local series ids, no compression, whose bytes depend on the zlib build), so another
implementation can recompute it from the same samples:

    samples in store order: grouped by device_id, devices in the order they first appear in
    the batch, each device's samples in batch order; n of them
    series: the distinct (device_id, signal) pairs in the order they first appear in store
    order; k of them
    strings: the str values in store order; m of them

    sha256( b"SYB1" | u32 n | u32 k | u32 m
            | strtab(device_id_1, signal_1, ..., device_id_k, signal_k)
            | n x u32 series index (0-based, into series)
            | n x i64 ts_ns
            | n x u8  kind << 2 | quality      kind: 0 float, 1 int, 2 bool, 3 str
            | n x i64 value bits               float: its IEEE 754 binary64 bits; int: itself;
                                               bool: 0 or 1; str: its index into strings
            | strtab(strings) )

    strtab(s_1 ... s_j) = j x u32 byte length of UTF-8(s_i), then UTF-8(s_1) ... UTF-8(s_j)

All integers little-endian. A NaN hashes with the payload it was given (its bits), and 1, 1.0
and True are three different values, as the store keeps them.
"""
from __future__ import annotations

import hashlib
import itertools
import struct
from typing import Mapping, Sequence

import numpy as np

from ..model import Sample
from . import codec
from .codec import Block

TAG = b"SYB1"
_HEADER = struct.Struct("<4sIII")
_U32 = np.dtype("<u4")
_I64 = np.dtype("<i8")


class SeriesNames:
    """The UTF-8 of each (device_id, signal) seen, encoded once per series, not per batch."""

    def __init__(self) -> None:
        self._utf8: dict[tuple[str, str], tuple[bytes, bytes]] = {}

    def __call__(self, key: tuple[str, str]) -> tuple[bytes, bytes]:
        enc = self._utf8.get(key)
        if enc is None:
            enc = self._utf8[key] = (key[0].encode("utf-8"), key[1].encode("utf-8"))
        return enc


def digest_block(block: Block, key_of: Mapping[int, tuple[str, str]],
                  names: SeriesNames) -> bytes:
    """The digest of a batch given as one block in store order whose `sid` column holds the
    store's series ids, with `key_of` mapping each of them to its (device_id, signal)."""
    assert block.sid is not None
    n = len(block)
    uniq, first, inverse = np.unique(block.sid, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")        # series in order of first appearance
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    series = [names(key_of[sid]) for sid in uniq[order].tolist()]
    return hashlib.sha256(b"".join((
        _HEADER.pack(TAG, n, len(series), len(block.strs)),
        _strtab(list(itertools.chain.from_iterable(series))),
        rank[inverse.reshape(-1)].astype(_U32).tobytes(),
        block.ts.astype(_I64, copy=False).tobytes(),
        block.kq.tobytes(),
        block.bits.astype(_I64, copy=False).tobytes(),
        _strtab([s.encode("utf-8") for s in block.strs]),
    ))).digest()


def batch_digest(samples: Sequence[Sample]) -> bytes:
    """The digest of a batch from its rows, as the store computes it when it commits them."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.device_id, []).append(s)
    ids: dict[tuple[str, str], int] = {}
    blocks = []
    for group in groups.values():
        sid = [ids.setdefault((s.device_id, s.signal), len(ids)) for s in group]
        blocks.append(codec.from_columns([s.ts_ns for s in group], [s.value for s in group],
                                         [int(s.quality) for s in group], sid))
    return digest_block(codec.concat(blocks), {v: k for k, v in ids.items()}, SeriesNames())


def _strtab(utf8: list[bytes]) -> bytes:
    return np.fromiter(map(len, utf8), dtype=_U32, count=len(utf8)).tobytes() + b"".join(utf8)
