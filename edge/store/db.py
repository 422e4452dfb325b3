"""Connections to the store's SQLite file and what can be learnt about the file itself:
opening (a damaged or foreign file is a StoreError saying how to recover), the integrity check,
and the sizes and bytes written that storage_info reports."""
from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Callable, Sequence

from ..errors import StoreError
from ..sqlite_errors import Condition, condition, damaged_advice

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 5.0
# Above this size the integrity check at open takes noticeable time: say so in the log first.
SLOW_CHECK_BYTES = 64 * 1024 * 1024


def many_rows(sql: str, width: int) -> Callable[[sqlite3.Connection, Sequence[tuple]], None]:
    """A runner of `sql`, an INSERT whose VALUES list is `{}`, for any number of rows of `width`
    values: one multi-row statement per power of two of them (64 at most) costs half of
    executemany's statement step per row, and leaves at most 7 distinct statements in
    sqlite3's statement cache, however many rows a call has."""
    row = "(" + ", ".join("?" * width) + ")"
    statements = {k: sql.format(", ".join([row] * k)) for k in (1 << i for i in range(7))}

    def run(conn: sqlite3.Connection, rows: Sequence[tuple]) -> None:
        at = 0
        while at < len(rows):
            k = min(64, 1 << ((len(rows) - at).bit_length() - 1))
            conn.execute(statements[k], [x for r in rows[at:at + k] for x in r])
            at += k
    return run


def connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            uri = Path(path).resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None,
                                   timeout=BUSY_TIMEOUT_S)
        else:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=BUSY_TIMEOUT_S)
        conn.execute("PRAGMA user_version").fetchone()   # fails now if it is not a database
        return conn
    except sqlite3.Error as exc:
        if condition(exc) is Condition.DAMAGED:
            raise StoreError(damaged(path, str(exc))) from exc
        raise StoreError(f"{path}: cannot open store{' read-only' if readonly else ''}: {exc}") from exc


def pragma(conn: sqlite3.Connection, path: str, sql: str) -> None:
    try:
        conn.execute(sql).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: {sql} failed: {exc}") from exc


def check_integrity(conn: sqlite3.Connection, path: str) -> None:
    """StoreError when SQLite finds the file damaged (quick_check: page and b-tree structure,
    without the slow index-to-table cross checks)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    if size > SLOW_CHECK_BYTES:
        log.info("checking store integrity (%s, %.0f MB)", path, size / 1e6)
    rows = conn.execute("PRAGMA quick_check(5)").fetchall()
    problems = [str(r[0]) for r in rows]
    if problems != ["ok"]:
        raise StoreError(damaged(path, "; ".join(problems)))


def damaged(path: str, detail: str) -> str:
    return f"store {path} is damaged (SQLite: {detail}); {damaged_advice(path)}"


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def process_write_bytes() -> int | None:
    try:
        with open("/proc/self/io", encoding="ascii") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None
