from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from edge import migrations
from edge.errors import StoreError
from edge.model import Sample
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
