"""Payload dead letters: what a connector received but could not turn into samples.

A sample the store refused is a dead letter of edge.deadletters; this is the step before: a
message that never became a sample (unreadable, too large, for a device nobody configured,
unmappable, bad Sparkplug). Each is kept with where it came from (topic), when, the device if
known, why, its size and its first `HEAD_BYTES` bytes, in a bounded table; the counts per device
and reason are kept in full, so a flood of one kind of garbage is still counted after its rows
were trimmed.

Connectors hand `Reject`s to whoever listens (connectors.reporting); a flood must not cost one
transaction per message, so the gateway queues them in a `RejectQueue` and writes them in
batches.
"""
from __future__ import annotations

import collections
import sqlite3
from dataclasses import dataclass
from typing import Iterable

HEAD_BYTES = 256
DEFAULT_KEEP = 10_000
DEFAULT_QUEUE = 10_000
_TEXT_CHARS = 500

# The reasons connectors give (others are allowed: a reason is free text, these are the common ones).
INVALID = "invalid"                # not a payload this connector can read
OVERSIZE = "oversize"              # larger than the configured limit
UNKNOWN_DEVICE = "unknown_device"  # for a device that is not configured
UNMAPPABLE = "unmappable"          # readable, but nothing in it maps to a signal
BAD_SPARKPLUG = "bad_sparkplug"    # not valid Sparkplug B (protobuf, topic, or session rules)
REASONS = (INVALID, OVERSIZE, UNKNOWN_DEVICE, UNMAPPABLE, BAD_SPARKPLUG)


@dataclass(frozen=True, slots=True)
class Reject:
    """One refused payload. `head` is at most HEAD_BYTES bytes; `size` the payload's full size."""

    arrived_ns: int
    source: str          # the connector: "mqtt"
    topic: str           # where it came from (an MQTT topic; a register range; a node id)
    device_id: str       # "" when it could not be tied to a device
    reason: str
    detail: str          # the error message
    size: int
    head: bytes

    @classmethod
    def of(cls, payload: bytes, *, arrived_ns: int, source: str, topic: str, device_id: str | None,
           reason: str, detail: str) -> "Reject":
        return cls(int(arrived_ns), source, _text(topic), _text(device_id or ""), _text(reason),
                   _text(detail), len(payload), bytes(payload[:HEAD_BYTES]))


@dataclass(frozen=True, slots=True)
class StoredReject:
    id: int
    arrived_ns: int
    source: str
    topic: str
    device_id: str
    reason: str
    detail: str
    size: int
    head: bytes


class RejectQueue:
    """Rejects waiting to be written, at most `maxlen`: past that the oldest waiting one is
    dropped but still counted (`dropped`), so a flood costs bounded memory and the table's
    counts stay whole (`take` returns the dropped counts with the rows)."""

    def __init__(self, maxlen: int = DEFAULT_QUEUE):
        self._items: collections.deque[Reject] = collections.deque()
        self._maxlen = maxlen
        self._dropped: collections.Counter[tuple[str, str]] = collections.Counter()
        self.received = 0
        self.dropped = 0

    def put(self, reject: Reject) -> None:
        self.received += 1
        if len(self._items) >= self._maxlen:
            old = self._items.popleft()
            self._dropped[(old.device_id, old.reason)] += 1
            self.dropped += 1
        self._items.append(reject)

    def take(self) -> tuple[list[Reject], dict[tuple[str, str], int]]:
        items, dropped = list(self._items), dict(self._dropped)
        self._items.clear()
        self._dropped.clear()
        return items, dropped

    def __len__(self) -> int:
        return len(self._items)


def add(conn: sqlite3.Connection, rejects: Iterable[Reject], keep: int = DEFAULT_KEEP,
        uncounted: dict[tuple[str, str], int] | None = None) -> int:
    """Insert `rejects`, count them (and `uncounted`: ones dropped before they got here), trim to
    the newest `keep` rows; returns rows added. Runs inside the caller's transaction."""
    rows = [(r.arrived_ns, r.source, r.topic, r.device_id, r.reason, r.detail, r.size, r.head)
            for r in rejects]
    tally = collections.Counter((r[3], r[4]) for r in rows)
    tally.update(uncounted or {})
    if rows:
        conn.executemany(
            "INSERT INTO payload_rejects (arrived_ns, source, topic, device_id, reason, detail, size, head) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        # Ids only grow (AUTOINCREMENT), so "the newest keep rows" is one primary-key range.
        conn.execute("DELETE FROM payload_rejects WHERE id <= (SELECT max(id) FROM payload_rejects) - ?",
                     (int(keep),))
    conn.executemany(
        "INSERT INTO payload_reject_counts (device_id, reason, count) VALUES (?, ?, ?) "
        "ON CONFLICT (device_id, reason) DO UPDATE SET count = count + excluded.count",
        [(d, r, n) for (d, r), n in tally.items()])
    return len(rows)


def newest(conn: sqlite3.Connection, *, device_id: str | None = None, reason: str | None = None,
           limit: int = 100) -> list[StoredReject]:
    clauses, params = [], []
    if device_id is not None:
        clauses.append("device_id = ?")
        params.append(device_id)
    if reason is not None:
        clauses.append("reason = ?")
        params.append(reason)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        "SELECT id, arrived_ns, source, topic, device_id, reason, detail, size, head FROM payload_rejects "
        f"{where} ORDER BY id DESC LIMIT ?", [*params, int(limit)]).fetchall()
    return [StoredReject(*r) for r in rows]


def counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """device_id ('' for unknown) -> reason -> payloads ever refused (not reduced by trimming)."""
    out: dict[str, dict[str, int]] = {}
    for device_id, reason, n in conn.execute(
            "SELECT device_id, reason, count FROM payload_reject_counts ORDER BY device_id, reason"):
        out.setdefault(device_id, {})[reason] = n
    return out


def _text(x: str) -> str:
    """Bounded text SQLite can always bind (a topic or message from the wire may hold anything)."""
    s = str(x)
    if not s.isascii():
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s if len(s) <= _TEXT_CHARS else s[:_TEXT_CHARS - 1] + "…"
