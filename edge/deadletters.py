"""Dead letters: the samples the store refused, kept where an operator can see them.

A refused sample is often refused *because* of its value (an int beyond int64, a string SQLite
cannot encode), so nothing here binds a sample's fields as they are: every field is turned into
bounded, always-encodable text first. Writing a dead letter therefore cannot fail on the value
that caused it.

The table is bounded (the newest `keep` rows stay); `dead_letter_counts` keeps the full tally per
device and reason, so a flood of one bad signal is still counted after its rows were trimmed.
"""
from __future__ import annotations

import collections
import sqlite3
from typing import Any, Iterable

from .records import DeadLetter

DEFAULT_KEEP = 10_000
VALUE_CHARS = 200
REASON_CHARS = 200
_NAME_CHARS = 200


def add(conn: sqlite3.Connection, items: Iterable[tuple[Any, str]], arrived_ns: int,
        keep: int = DEFAULT_KEEP) -> int:
    """Insert (sample, reason) pairs and trim to the newest `keep` rows; returns rows added.
    Runs inside the caller's transaction."""
    rows = [_row(item, reason, arrived_ns) for item, reason in items]
    if not rows:
        return 0
    conn.executemany("INSERT INTO dead_letters (arrived_ns, device_id, signal, ts, value, reason) "
                     "VALUES (?, ?, ?, ?, ?, ?)", rows)
    tally = collections.Counter((r[1], r[5]) for r in rows)
    conn.executemany(
        "INSERT INTO dead_letter_counts (device_id, reason, count) VALUES (?, ?, ?) "
        "ON CONFLICT (device_id, reason) DO UPDATE SET count = count + excluded.count",
        [(d, r, n) for (d, r), n in tally.items()])
    # Ids only grow (AUTOINCREMENT), so "the newest keep rows" is one primary-key range.
    conn.execute("DELETE FROM dead_letters WHERE id <= (SELECT max(id) FROM dead_letters) - ?",
                 (int(keep),))
    return len(rows)


def newest(conn: sqlite3.Connection, device_id: str | None, limit: int) -> list[DeadLetter]:
    where, params = ("WHERE device_id = ?", [device_id]) if device_id is not None else ("", [])
    rows = conn.execute(
        "SELECT id, arrived_ns, device_id, signal, ts, value, reason FROM dead_letters "
        f"{where} ORDER BY id DESC LIMIT ?", [*params, int(limit)]).fetchall()
    return [DeadLetter(*r) for r in rows]


def counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for device_id, reason, n in conn.execute(
            "SELECT device_id, reason, count FROM dead_letter_counts ORDER BY device_id, reason"):
        out.setdefault(device_id, {})[reason] = n
    return out


def _row(item: Any, reason: str, arrived_ns: int) -> tuple[int, str, str, str, str, str]:
    # Whatever `item` is (a Sample, or something that was passed off as one), read it defensively.
    device_id = getattr(item, "device_id", None)
    signal = getattr(item, "signal", None)
    ts = getattr(item, "ts_ns", None)
    value = getattr(item, "value", item)
    return (int(arrived_ns),
            _name(device_id), _name(signal),
            "" if ts is None else _text(_repr(ts), 60),
            _text(_repr(value), VALUE_CHARS),
            _text(str(reason), REASON_CHARS))


def _name(x: Any) -> str:
    if x is None:
        return "?"
    return _text(x if isinstance(x, str) else _repr(x), _NAME_CHARS)


def _repr(x: Any) -> str:
    try:
        return repr(x)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not lose the dead letter
        return f"<{type(x).__name__}: repr failed: {type(exc).__name__}>"


def _text(x: Any, limit: int) -> str:
    """`x` as text SQLite can always bind: at most `limit` characters, lone surrogates escaped."""
    s = x if isinstance(x, str) else _repr(x)
    if not s.isascii():
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s if len(s) <= limit else s[:limit - 1] + "…"
