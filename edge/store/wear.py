"""How hard the gateway writes the disk: values and bytes written since it opened the store.

The writing process keeps the counters; at every compaction it saves them in `store_wear` (one
row, in the compaction's transaction, so no extra commit), which is how `shangyun status` in
another process sees the gateway's write rate. Bytes are the process's /proc/self/io
write_bytes (WAL, checkpoints and whatever else the process writes; in the gateway that is
almost all the store), None where the platform does not say.
"""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from . import db

NS_PER_S = 1_000_000_000


@dataclass
class Meter:
    values_written: int = 0
    opened_ns: int = field(default_factory=time.time_ns)
    io_at_open: int | None = field(default_factory=db.process_write_bytes)
    pid: int = field(default_factory=os.getpid)

    def bytes_written(self) -> int | None:
        now = db.process_write_bytes()
        return None if now is None or self.io_at_open is None else now - self.io_at_open

    def figures(self) -> dict[str, Any]:
        return _figures(self.pid, self.opened_ns, time.time_ns(), self.values_written,
                        self.bytes_written())


def save(conn: sqlite3.Connection, meter: Meter) -> None:
    """Store the meter's figures; runs in the caller's transaction."""
    f = meter.figures()
    conn.execute("INSERT OR REPLACE INTO store_wear (id, pid, since_ns, as_of_ns, values_written, "
                 "bytes_written) VALUES (1, ?, ?, ?, ?, ?)",
                 (f["writer_pid"], f["since_ns"], f["as_of_ns"], f["values_written"],
                  f["bytes_written"]))


def load(conn: sqlite3.Connection) -> dict[str, Any]:
    """The figures the writer saved last, or all None when it never did."""
    row = conn.execute("SELECT pid, since_ns, as_of_ns, values_written, bytes_written "
                       "FROM store_wear WHERE id = 1").fetchone()
    if row is None:
        return {k: None for k in _figures(0, 0, 1, 0, 0)}
    return _figures(*row)


def _figures(pid: int, since_ns: int, as_of_ns: int, values: int, written: int | None) -> dict[str, Any]:
    seconds = max(as_of_ns - since_ns, 1) / NS_PER_S
    return {"writer_pid": pid, "since_ns": since_ns, "as_of_ns": as_of_ns,
            "values_written": values, "bytes_written": written,
            "values_per_s": values / seconds,
            "bytes_per_s": None if written is None else written / seconds,
            "bytes_per_value": None if written is None or not values else written / values}
