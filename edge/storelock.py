"""One writing shangyun per store: an exclusive `flock` on `<store>.lock`, held while it is open.

Two gateways writing one SQLite file would not corrupt it (SQLite locks per transaction), but they
would interleave two devices' worth of rollup progress and retention, and each would believe it
owns the file. The lock makes the second one fail at start with the holder's pid instead.

`flock` (not `fcntl` record locks) because it belongs to the open file description: a second
open in the *same* process is refused too, and the kernel drops the lock when the holder dies,
however it dies, so a stale lock file never blocks a restart. Read-only opens never lock.
"""
from __future__ import annotations

import fcntl
import os

from .errors import StoreError


class StoreLock:
    """The held lock of one store; `release()` (idempotent) lets the next writer in."""

    def __init__(self, store_path: str, fd: int) -> None:
        self.store_path = store_path
        self.path = lock_path(store_path)
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, store_path: str) -> "StoreLock":
        """Take the lock without waiting; StoreError naming the holder's pid when it is taken."""
        path = lock_path(store_path)
        try:
            # No O_TRUNC: the file may hold the current owner's pid, which the error reports.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"{store_path}: cannot create the lock file {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "pid unknown"
            raise StoreError(f"store {store_path} is in use by another shangyun ({who}); "
                             f"stop it first") from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"{store_path}: cannot lock {path}: {exc}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(store_path, fd)

    def release(self) -> None:
        if self._fd is not None:
            # The file stays: unlinking it would race with a process that just opened it and
            # is about to lock the (then orphaned) inode while a third creates a new one.
            os.close(self._fd)
            self._fd = None


def lock_path(store_path: str) -> str:
    # Resolved, so two spellings of one file (relative, through a symlink) share one lock.
    return f"{os.path.realpath(store_path)}.lock"


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
