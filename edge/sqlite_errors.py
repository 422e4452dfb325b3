"""What a sqlite3 error means for the store, and what the operator should do about it.

The store sink retries conditions outside the batch (busy, locked, full, I/O, damaged file,
read-only file) and isolates everything else to the rows that cause it; the store refuses to
open a damaged file. Both need the same reading of SQLite's result codes, kept here.
"""
from __future__ import annotations

import enum
import sqlite3


class Condition(enum.Enum):
    """A store-wide condition: not the batch's fault, so its data is kept and retried."""

    BUSY = "busy"
    FULL = "full"
    IO = "io"
    DAMAGED = "damaged"
    READONLY = "readonly"


# Primary result codes (sqlite3.h); sqlite3 exposes them as module constants from Python 3.11.
_BY_CODE = {
    5: Condition.BUSY,        # SQLITE_BUSY
    6: Condition.BUSY,        # SQLITE_LOCKED
    8: Condition.READONLY,    # SQLITE_READONLY
    10: Condition.IO,         # SQLITE_IOERR
    11: Condition.DAMAGED,    # SQLITE_CORRUPT
    13: Condition.FULL,       # SQLITE_FULL
    26: Condition.DAMAGED,    # SQLITE_NOTADB
}
# For errors raised without a result code (older Pythons, or sqlite3 wrapping them itself).
_BY_TEXT = (
    ("database is locked", Condition.BUSY),
    ("database is busy", Condition.BUSY),
    ("database table is locked", Condition.BUSY),
    ("database or disk is full", Condition.FULL),
    ("disk i/o error", Condition.IO),
    ("database disk image is malformed", Condition.DAMAGED),
    ("file is not a database", Condition.DAMAGED),
    ("readonly database", Condition.READONLY),
)


def condition(exc: BaseException) -> Condition | None:
    """The store-wide condition `exc` reports, or None when it may be about the data written."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _BY_CODE:
        return _BY_CODE[code & 0xFF]
    text = str(exc).lower()
    for needle, cond in _BY_TEXT:
        if needle in text:
            return cond
    return None


def damaged_advice(path: str) -> str:
    return (f"stop shangyun, move {path} (with its -wal and -shm files) aside and start fresh, or "
            f"salvage what is readable: sqlite3 {path} \".recover\" | sqlite3 NEW.db")


def describe(cond: Condition, path: str, waiting: int, exc: BaseException) -> str:
    """One line for the pipeline's WARNING: what is wrong, that the data is kept, what to do."""
    keep = f"{waiting} samples waiting"
    if cond is Condition.FULL:
        return (f"store {path}: disk full ({keep}); free space on the disk holding it "
                f"(SQLite: {exc})")
    if cond is Condition.BUSY:
        return (f"store {path}: database locked by another process ({keep}); if it does not clear, "
                f"look for another program holding the file open (SQLite: {exc})")
    if cond is Condition.IO:
        return (f"store {path}: disk I/O error ({keep}); check the disk and the kernel log "
                f"(SQLite: {exc})")
    if cond is Condition.READONLY:
        return (f"store {path}: the file cannot be written ({keep}); check its permissions and "
                f"that the disk is mounted read-write (SQLite: {exc})")
    return f"store {path} is damaged: {exc} ({keep}); {damaged_advice(path)}"
