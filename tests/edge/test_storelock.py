"""One writing shangyun per store: a second read-write open is refused with the holder's pid."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge import migrations
from edge.errors import StoreError, StoreVersionError
from edge.model import Sample
from edge.store import Store

HOLDER = textwrap.dedent("""
    import sys
    from edge.store import Store
    store = Store.open(sys.argv[1])
    print("open", flush=True)
    sys.stdin.readline()      # hold the store until told (or killed)
    store.close()
    print("closed", flush=True)
""")


def start_holder(store_path: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(store_path)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    return proc


def test_second_open_in_the_same_process_is_refused(store_path):
    with Store.open(store_path):
        with pytest.raises(StoreError, match=f"in use by another shangyun \\(pid {os.getpid()}\\); "
                                             "stop it first"):
            Store.open(store_path)
    with Store.open(store_path) as again:      # released on close
        again.write_samples([Sample("m1", "a", 1, 1.0)])


def test_readonly_opens_take_no_lock(store_path):
    with Store.open(store_path) as writer:
        writer.write_samples([Sample("m1", "a", 1, 1.0)])
        with Store.open(store_path, readonly=True) as r1, Store.open(store_path, readonly=True) as r2:
            assert r1.sample_count() == r2.sample_count() == 1


def test_another_process_holding_the_store_is_named_and_released_on_exit(store_path):
    proc = start_holder(store_path)
    try:
        with pytest.raises(StoreError, match=f"pid {proc.pid}"):
            Store.open(store_path)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "closed"
    finally:
        proc.communicate(timeout=30)
    Store.open(store_path).close()


def test_a_killed_holder_releases_the_lock(store_path):
    proc = start_holder(store_path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    with Store.open(store_path) as s:       # the stale lock file does not block
        s.write_samples([Sample("m1", "a", 1, 1.0)])
    assert Path(f"{store_path}.lock").read_text().strip() == str(os.getpid())


def test_a_failed_open_releases_the_lock(store_path):
    Store.open(store_path).close()
    conn = sqlite3.connect(store_path)
    conn.execute(f"PRAGMA user_version = {migrations.latest_version() + 1}")
    conn.close()
    with pytest.raises(StoreVersionError):
        Store.open(store_path)
    conn = sqlite3.connect(store_path)
    conn.execute(f"PRAGMA user_version = {migrations.latest_version()}")
    conn.close()
    Store.open(store_path).close()


def test_another_spelling_of_the_same_file_is_the_same_lock(store_path, tmp_path, monkeypatch):
    link = tmp_path / "link.db"
    link.symlink_to(store_path)
    monkeypatch.chdir(tmp_path)
    with Store.open(store_path):
        for other in (link, Path(store_path.name)):
            with pytest.raises(StoreError, match="in use by another shangyun"):
                Store.open(other)
