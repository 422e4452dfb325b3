"""A store written before the vectorised write path (its blobs encoded as tests/edge/store_v1.py
did: zlib's default window, chunks carrying their device's whole string table) reads back
exactly as one written today, keeps taking writes, late samples merged into its old chunks,
and rolls up to the same minutes; and today's write path stores what its rows say, whatever
order a batch's devices come in."""
from __future__ import annotations

import hashlib
import math
import sqlite3
import struct
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.model import Quality, Sample
from edge.store import Store, codec
from edge.store import samples as raw
from edge.store.ledger import GENESIS

from . import store_v1
from .test_batch_digest import reference_digest
from .timebase import DAY0_NS, S_NS

DEVICES = ("m1", "m2", "机器3")
STATES = ("running", "idle", "停机")


def batch(k: int, late: bool = False) -> list[Sample]:
    """Devices interleaved, every value kind, a redelivery; `late`: 20 minutes back."""
    t = DAY0_NS + (k * 7 - (1200 if late else 0)) * S_NS
    nan = struct.unpack("<d", struct.pack("<q", 0x7FF8_0000_0000_0000 | k))[0]
    out = []
    for i, d in enumerate(DEVICES):
        out += [Sample(d, "state", t, STATES[(k // 5 + i) % 3]),
                Sample(d, "count_total", t, k * 3 + i),
                Sample(d, "power_kw", t + S_NS, 5.0 + k % 7, Quality.GOOD if k % 9 else Quality.BAD),
                Sample(d, "door", t, k % 2 == 0)]
    out.insert(3, Sample("m2", "temp", t, nan, Quality.UNCERTAIN))
    out.append(Sample("m1", "count_total", t, k * 3))           # redelivered in the batch
    out.append(Sample("m2", "energy_kwh", t + 2 * S_NS, -0.0 if k % 2 else math.inf))
    return out


def history(store: Store, ks: range, late_every: int = 0) -> None:
    for k in ks:
        store.write_samples(batch(k))
        if late_every and k % late_every == 0:
            store.write_samples(batch(k, late=True))
        if k % 25 == 24:
            store.compact()
        if k % 60 == 59:
            store.roll_up(DAY0_NS + (k * 7 - 300) * S_NS)


def packed(values: list) -> list:
    """Values comparable with ==, NaN included (by its bits), types kept."""
    return [(type(v), struct.pack("<d", v) if type(v) is float else v) for v in values]


def contents(store: Store) -> dict:
    out: dict = {"count": store.sample_count(), "by_quality": [
        store.sample_count(quality=q) for q in Quality],
        "since": store.sample_count(since_ns=DAY0_NS + 400 * 7 * S_NS)}
    for d in DEVICES:
        rows = [(s.signal, s.ts_ns, type(s.value).__name__, s.quality,
                 struct.pack("<d", s.value) if type(s.value) is float else s.value)
                for s in store.samples(d)]
        out[d] = rows
        out[d, "ts"] = store.sample_timestamps(d).tolist()
        for sig in store.signals(d):
            last = store.latest(d, sig)
            out[d, sig] = None if last is None else (last.ts_ns, repr(last.value), last.quality)
    out["days"] = [(d, day, arr.tobytes()) for d, day, arr in store.rollup_days()]
    return out


def test_a_store_written_before_reads_and_rolls_up_as_one_written_now(tmp_path, monkeypatch):
    old_path, new_path = tmp_path / "before.db", tmp_path / "now.db"
    monkeypatch.setattr(codec, "encode_parts", store_v1.encode_parts)
    monkeypatch.setattr(raw, "compact_build", store_v1.compact_build)
    with Store.open(old_path) as s:
        history(s, range(0, 300), late_every=40)
    monkeypatch.undo()
    with Store.open(new_path) as s:
        history(s, range(0, 300), late_every=40)
    # The old store really holds old blobs: chunks with strings they do not use.
    conn = sqlite3.connect(old_path)
    chunk = codec.decode(conn.execute(
        "SELECT data FROM chunks WHERE series_id = (SELECT id FROM series WHERE device_id = 'm1' "
        "AND signal = 'power_kw') LIMIT 1").fetchone()[0], "chunk")
    conn.close()
    assert chunk.strs and not (chunk.kq >> 2 == codec.STR).any()

    with Store.open(old_path) as old, Store.open(new_path) as new:
        assert contents(old) == contents(new)
        # Both keep going with today's code: late samples merge into the old chunks.
        for s in (old, new):
            history(s, range(300, 420), late_every=10)
            s.roll_up(DAY0_NS + 420 * 7 * S_NS)
        assert contents(old) == contents(new)
        assert len(contents(new)["days"]) > 0


SAMPLE = st.builds(
    Sample,
    st.sampled_from(DEVICES),
    st.sampled_from(("state", "a", "b")),
    st.integers(DAY0_NS, DAY0_NS + 50 * S_NS),
    st.one_of(st.floats(allow_nan=False), st.integers(-(2**63), 2**63 - 1), st.booleans(),
              st.sampled_from(STATES + ("",))),
    st.sampled_from(list(Quality)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(SAMPLE, min_size=1, max_size=30), min_size=1, max_size=4))
def test_any_batch_stores_its_rows_and_digests_as_its_rows_say(tmp_path_factory, batches):
    path = Path(tmp_path_factory.mktemp("w")) / "s.db"
    expected: dict = {}
    acc = GENESIS
    with Store.open(path) as s:
        for b in batches:
            s.write_samples(b)
            for x in b:      # the latest write of a (device, signal, ts) wins
                expected[x.device_id, x.signal, x.ts_ns] = x
            acc = hashlib.sha256(acc + reference_digest(b)).digest()
        got = {(x.device_id, x.signal, x.ts_ns): x for d in DEVICES for x in s.samples(d)}
        s.compact()
        after = {(x.device_id, x.signal, x.ts_ns): x for d in DEVICES for x in s.samples(d)}
        assert s.sample_count() == len(expected)
    for seen in (got, after):
        assert seen.keys() == expected.keys()
        for key, x in expected.items():
            y = seen[key]
            assert (type(y.value), y.value, y.quality) == (type(x.value), x.value, x.quality)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT acc FROM ledger_pending").fetchone()[0] == acc
        spans = conn.execute("SELECT device_id, min(min_ts), max(max_ts) FROM recent "
                             "GROUP BY device_id").fetchall()
        progress = dict((d, hi) for d, hi in conn.execute(
            "SELECT device_id, max_ts_ns FROM rollup_progress"))
    finally:
        conn.close()
    assert spans == []           # compacted
    assert progress == {d: max(x.ts_ns for b in batches for x in b if x.device_id == d)
                        for d in {x.device_id for b in batches for x in b}}
    assert np.all(np.array(list(progress.values())) >= DAY0_NS)


def test_a_devices_chunks_read_at_once_give_what_each_series_read_alone_gives(tmp_path):
    """raw.device_chunks (one query and one decode for a roll-up's device) against raw.series
    and raw.last_before per series, over chunks, recent rows overlaying them, late samples,
    BAD samples and ranges cutting chunks."""
    with Store.open(tmp_path / "s.db") as s:
        history(s, range(0, 200), late_every=15)
        for k in (150, 151, 152):       # redelivered over chunked samples, waiting in recent
            s.write_samples(batch(k))
        s.write_samples(batch(160, late=True))
        conn = s._w
        with s._wlock:
            for d in DEVICES:
                recs = raw.split_by_series(raw.recent(conn, d))
                sids = [r[0] for r in conn.execute("SELECT id FROM series WHERE device_id = ?", (d,))]
                assert recs and sids
                for lo_s, hi_s in ((0, 10_000), (-1300, -1100), (300, 1061), (1063, 1064),
                                   (3599, 3700), (5000, 6000)):
                    lo, hi = DAY0_NS + lo_s * S_NS, DAY0_NS + hi_s * S_NS
                    chunks = raw.device_chunks(conn, d, lo, hi)
                    for sid in sids:
                        rec, near = recs.get(sid, codec.empty()), chunks.get(sid, codec.empty())
                        pairs = [(raw.overlay(near, rec, lo, hi), raw.series(conn, sid, rec, lo, hi))]
                        pairs += [(raw.last_before(conn, sid, rec, lo, bad=bad, near=near),
                                   raw.last_before(conn, sid, rec, lo, bad=bad)) for bad in (False, True)]
                        for got, alone in pairs:
                            assert got.ts.tolist() == alone.ts.tolist()
                            assert got.kq.tolist() == alone.kq.tolist()
                            assert packed(got.values()) == packed(alone.values())
