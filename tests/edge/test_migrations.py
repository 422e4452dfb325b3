from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from edge import migrations
from edge.errors import StoreError
from edge.model import Quality, Sample
from edge.store import Store


def test_versions_are_consecutive_from_one():
    assert [m.version for m in migrations.MIGRATIONS] == list(range(1, migrations.latest_version() + 1))


def test_registering_out_of_order_is_refused():
    with pytest.raises(RuntimeError, match="expected"):
        migrations.migration(migrations.latest_version() + 5, "skip")(lambda conn: None)


def test_a_failing_migration_leaves_the_previous_version(store_path, monkeypatch):
    Store.open(store_path).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("THIS IS NOT SQL")

    extra = migrations.Migration(migrations.latest_version() + 1, "broken", broken)
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, extra])
    with pytest.raises(StoreError, match="broken"):
        Store.open(store_path)
    conn = sqlite3.connect(store_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == extra.version - 1
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    conn.close()


def test_readonly_open_of_an_unmigrated_file_is_refused(tmp_path):
    p = tmp_path / "empty.db"
    sqlite3.connect(p).close()
    with pytest.raises(StoreError, match="not a shangyun store"):
        Store.open(p, readonly=True)


def test_reader_in_another_process_while_the_writer_holds_the_file(store_path):
    with Store.open(store_path) as writer:
        writer.write_samples([Sample("m1", "a", t, float(t)) for t in range(100)])
        script = textwrap.dedent(f"""
            from edge.store import Store
            with Store.open({str(store_path)!r}, readonly=True) as r:
                print(r.sample_count("m1"))
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=60, check=True)
        assert out.stdout.strip() == "100"
        writer.write_samples([Sample("m1", "a", 1000, 1.0)])   # the writer is not blocked
        assert writer.sample_count() == 101


def _old_layout_store(path) -> list[Sample]:
    """A store at schema version 2 (the clustered `samples` table), filled the way that code
    filled it; returns what it holds, in samples() order."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for m in migrations.MIGRATIONS[:2]:
        m.apply(conn)
    conn.execute("PRAGMA user_version = 2")
    hour = 3600 * 10**9
    expected = []
    rows = []
    for sid, (dev, sig) in enumerate([("m1", "power_kw"), ("m1", "state"), ("m2", "flag")], 1):
        conn.execute("INSERT INTO series (id, device_id, signal) VALUES (?, ?, ?)", (sid, dev, sig))
        for k in range(300):                       # 300 samples over 5 hours: several buckets
            ts = 1_710_028_800 * 10**9 + k * hour // 60
            q = Quality.BAD if k % 97 == 0 else Quality.GOOD
            if sig == "power_kw":
                value = float("nan") if k == 7 else (k if k % 2 else k * 0.5)
                stored, is_bool = (None if k == 7 else value), 0
            elif sig == "state":
                value = stored = ("running", "idle")[k % 2]
                is_bool = 0
            else:
                value, stored, is_bool = bool(k % 3), int(bool(k % 3)), 1
            rows.append((sid, ts, stored, is_bool, int(q)))
            expected.append(Sample(dev, sig, ts, value, q))
    conn.executemany("INSERT INTO samples (series_id, ts_ns, value, is_bool, quality) "
                     "VALUES (?, ?, ?, ?, ?)", rows)
    conn.close()
    return expected


def _same(a: list[Sample], b: list[Sample]) -> bool:
    def key(s: Sample) -> tuple:
        v = "nan" if isinstance(s.value, float) and s.value != s.value else s.value
        return (s.device_id, s.signal, s.ts_ns, type(s.value), v, s.quality)
    return [key(s) for s in a] == [key(s) for s in b]


def test_an_old_layout_store_is_migrated_and_reads_back_identically(store_path):
    expected = _old_layout_store(store_path)
    with Store.open(store_path) as s:
        conn = s._r
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.latest_version()
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'samples'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] >= 3 * 5
        for dev in ("m1", "m2"):
            want = sorted((x for x in expected if x.device_id == dev), key=lambda x: (x.ts_ns, x.signal))
            assert _same(s.samples(dev), want)
            assert s.sample_count(dev) == len(want)
            assert s.sample_count(dev, quality=Quality.BAD) == sum(x.quality == Quality.BAD for x in want)
            assert list(s.sample_timestamps(dev)) == sorted({x.ts_ns for x in want})
        last = [x for x in expected if x.signal == "state"][-1]
        assert _same([s.latest("m1", "state")], [last])
        # New writes land next to the migrated ones; a redelivered old sample is still one.
        s.write_samples([expected[0], Sample("m1", "power_kw", expected[299].ts_ns + 1, 1.0)])
        assert s.sample_count() == len(expected) + 1
        s.compact()
        assert s.sample_count() == len(expected) + 1
        # The migrated history rolls up: every migrated GOOD/BAD sample lands in its minute.
        assert s.roll_up(expected[-1].ts_ns + 10 * 60 * 10**9) > 0
        day = s.rollup_day_summaries(["m1"])
        assert sum(d["samples"] for d in day) == 2 * 300 + 1
