"""The ledger's batch digest (edge.store.batch_digest), pinned against the encoding
docs/evidence.md defines, written out again here from the rows with struct and no numpy, so the
test does not trust the code under test."""
from __future__ import annotations

import hashlib
import math
import sqlite3
import struct
from pathlib import Path

import pytest

from edge.model import Quality, Sample
from edge.store import Store
from edge.store import codec
from edge.store.batch_digest import SeriesHashes, batch_digest, digest_block
from edge.store.ledger import GENESIS

from .timebase import DAY0_NS, S_NS

FLOAT, INT, BOOL, STR = 0, 1, 2, 3


def strtab(strings: list[str]) -> bytes:
    utf8 = [s.encode("utf-8") for s in strings]
    return b"".join(struct.pack("<I", len(u)) for u in utf8) + b"".join(utf8)


def reference_digest(batch: list[Sample]) -> bytes:
    devices: list[str] = []
    for s in batch:
        if s.device_id not in devices:
            devices.append(s.device_id)
    ordered = [s for d in devices for s in batch if s.device_id == d]
    strings: list[str] = []
    series, kq, bits = [], [], []
    for s in ordered:
        series.append(hashlib.sha256(strtab([s.device_id, s.signal])).digest())
        v = s.value
        if isinstance(v, bool):
            kind, b = BOOL, int(v)
        elif isinstance(v, int):
            kind, b = INT, v
        elif isinstance(v, float):
            kind, b = FLOAT, struct.unpack("<q", struct.pack("<d", v))[0]
        else:
            kind, b = STR, len(strings)
            strings.append(v)
        kq.append(kind << 2 | int(s.quality))
        bits.append(b)
    n = len(ordered)
    return hashlib.sha256(
        b"SYB1" + struct.pack("<II", n, len(strings))
        + b"".join(series)
        + struct.pack(f"<{n}q", *(s.ts_ns for s in ordered))
        + bytes(kq)
        + struct.pack(f"<{n}q", *bits)
        + strtab(strings)).digest()


def mixed_batch(k: int) -> list[Sample]:
    """Devices interleaved, every value kind, non-ASCII strings, a NaN with a payload, all
    qualities, and a sample given twice."""
    t = DAY0_NS + k * 10 * S_NS
    nan = struct.unpack("<d", struct.pack("<q", 0x7FF8_0000_0000_1234))[0]
    return [
        Sample("m2", "state", t, "运行"),
        Sample("m1", "count_total", t, k),
        Sample("m2", "temp", t, 21.5 + k, Quality.UNCERTAIN),
        Sample("m1", "door", t, True),
        Sample("m1", "temp", t, nan, Quality.BAD),
        Sample("m3", "count_total", t + 1, -(2**63)),
        Sample("m2", "state", t + 1, "idle"),
        Sample("m1", "count_total", t, k),                 # redelivered within the batch
        Sample("m1", "power_kw", t + 2, -0.0),
        Sample("m3", "энергия", t + 2, math.inf),
    ]


def test_digest_matches_an_independent_recomputation():
    for k in range(3):
        assert batch_digest(mixed_batch(k)) == reference_digest(mixed_batch(k))


def test_the_store_folds_the_same_digest_as_its_rows_give(store_path: Path):
    with Store.open(store_path) as store:
        for k in range(3):
            store.write_samples(mixed_batch(k))
    acc = GENESIS
    for k in range(3):
        acc = hashlib.sha256(acc + reference_digest(mixed_batch(k))).digest()
    conn = sqlite3.connect(store_path)
    try:
        assert conn.execute("SELECT batches, samples, acc FROM ledger_pending").fetchall() == [
            (3, 30, acc)]
    finally:
        conn.close()


def test_a_store_reopened_with_other_series_ids_digests_the_same(store_path: Path, tmp_path):
    # Series ids are the store's own: another store that met the series in another order
    # must fold the same digest for the same batch.
    other = tmp_path / "other.db"
    with Store.open(other) as s:
        s.write_samples([Sample("m3", "x", DAY0_NS, 1.0), Sample("m2", "temp", DAY0_NS, 1.0)])
    with Store.open(other) as s:
        s.write_samples(mixed_batch(0))
    with Store.open(store_path) as s:
        s.write_samples(mixed_batch(0))

    def last_acc(path: Path) -> bytes:
        conn = sqlite3.connect(path)
        try:
            return conn.execute("SELECT acc FROM ledger_pending").fetchone()[0]
        finally:
            conn.close()
    first = hashlib.sha256(GENESIS + reference_digest(
        [Sample("m3", "x", DAY0_NS, 1.0), Sample("m2", "temp", DAY0_NS, 1.0)])).digest()
    assert last_acc(other) == hashlib.sha256(first + reference_digest(mixed_batch(0))).digest()
    assert last_acc(store_path) == hashlib.sha256(
        GENESIS + reference_digest(mixed_batch(0))).digest()


@pytest.mark.parametrize("a, b", [
    ([Sample("m1", "v", 0, 1)], [Sample("m1", "v", 0, 1.0)]),
    ([Sample("m1", "v", 0, 1)], [Sample("m1", "v", 0, True)]),
    ([Sample("m1", "v", 0, 0.0)], [Sample("m1", "v", 0, -0.0)]),
    ([Sample("m1", "v", 0, "1")], [Sample("m1", "v", 0, 1)]),
    ([Sample("m1", "ab", 0, 1.0)], [Sample("m1a", "b", 0, 1.0)]),
    ([Sample("m1", "v", 0, "ab"), Sample("m1", "v", 1, "c")],
     [Sample("m1", "v", 0, "a"), Sample("m1", "v", 1, "bc")]),
    ([Sample("m1", "v", 0, 1.0, Quality.GOOD)], [Sample("m1", "v", 0, 1.0, Quality.BAD)]),
    ([Sample("m1", "v", 0, 1.0), Sample("m1", "v", 1, 2.0)],
     [Sample("m1", "v", 1, 2.0), Sample("m1", "v", 0, 1.0)]),
    ([Sample("m1", "v", 0, 1.0), Sample("m1", "w", 0, 1.0)],
     [Sample("m1", "v", 0, 1.0), Sample("m1", "v", 0, 1.0)]),
])
def test_different_rows_digest_differently(a, b):
    assert batch_digest(a) != batch_digest(b)
    assert reference_digest(a) == batch_digest(a) and reference_digest(b) == batch_digest(b)


def test_a_series_id_reused_after_a_rolled_back_write_names_its_new_series(store_path: Path):
    def fail(conn, rows):
        raise RuntimeError("sink broke")

    with Store.open(store_path) as store:
        store.set_write_hook(fail)
        with pytest.raises(RuntimeError):
            store.write_samples([Sample("m1", "a", DAY0_NS, 1.0)])
        store.set_write_hook(None)
        # The series row of "a" rolled back: "b" gets its id.
        batch = [Sample("m1", "b", DAY0_NS, 1.0)]
        store.write_samples(batch)
    conn = sqlite3.connect(store_path)
    try:
        assert conn.execute("SELECT id, signal FROM series").fetchall() == [(1, "b")]
        assert conn.execute("SELECT batches, acc FROM ledger_pending").fetchall() == [
            (1, hashlib.sha256(GENESIS + reference_digest(batch)).digest())]
    finally:
        conn.close()


def test_series_ids_past_the_array_digest_the_same():
    batch = mixed_batch(1)
    ordered = sorted(batch, key=lambda s: ["m2", "m1", "m3"].index(s.device_id))
    keys = list(dict.fromkeys((s.device_id, s.signal) for s in ordered))
    for base in (0, SeriesHashes.MAX_ARRAY_IDS - 2, 2**31 - 100):
        sid_of = {k: base + 3 * i for i, k in enumerate(keys)}
        block = codec.from_columns([s.ts_ns for s in ordered], [s.value for s in ordered],
                                   [int(s.quality) for s in ordered],
                                   [sid_of[(s.device_id, s.signal)] for s in ordered])
        key_of = {v: k for k, v in sid_of.items()}
        hashes = SeriesHashes()
        for _ in range(2):       # the second time from the cache
            assert digest_block(block, key_of, hashes) == reference_digest(batch)
