"""Acknowledging QoS 1 messages once they are stored, in the order they arrived.

MQTT (3.1.1 §4.6, 5 §4.6) requires PUBACKs in the order of the PUBLISHes. The pipeline
commits in FIFO order, but a message may also be settled without a commit (a birth message,
a payload that produced no sample), so each message waits here until every one received before
it is settled too. One `InOrderAcks` belongs to one connection: after the link is lost nothing
more is sent (`close()`), because the broker redelivers every unacknowledged message of the
session on the next connection, where the message ids are new.

Runs on the event loop thread only; `send(mids)` is what puts the PUBACKs on the wire. A commit
settles many messages at once, so they go to `send` together, in order (one socket write:
connectors/mqtt/client.py `send_acks`).
"""
from __future__ import annotations

import collections
from typing import Callable, Iterable, Sequence


class Pending:
    """One received QoS 1 message waiting for its acknowledgement.

    `waiting` counts the holds on it: one per batch holding some of its samples (on a shared
    connection one message may carry samples of several devices, each device's batch committed
    on its own), so it is settled when the last of them is."""

    __slots__ = ("mid", "waiting")

    def __init__(self, mid: int):
        self.mid = mid
        self.waiting = 1

    @property
    def settled(self) -> bool:
        return self.waiting <= 0


class InOrderAcks:
    def __init__(self, send: Callable[[Sequence[int]], None]):
        self._send = send
        self._queue: collections.deque[Pending] = collections.deque()
        self._closed = False
        self.max_in_flight = 0

    @property
    def in_flight(self) -> int:
        """Messages received and not acknowledged yet."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    def received(self, mid: int) -> Pending:
        entry = Pending(mid)
        self._queue.append(entry)
        self.max_in_flight = max(self.max_in_flight, len(self._queue))
        return entry

    def settle(self, entries: Iterable[Pending]) -> None:
        """These messages (one hold on each) are durable or need no storing: acknowledge every
        message from the oldest on that is settled."""
        for entry in entries:
            entry.waiting -= 1
        queue = self._queue
        if not queue or queue[0].waiting > 0:
            return
        mids = []
        while queue and queue[0].waiting <= 0:
            mids.append(queue.popleft().mid)
        if not self._closed:
            self._send(mids)

    def close(self) -> None:
        """The connection is gone: acknowledge nothing more on it."""
        self._closed = True
        self._queue.clear()
