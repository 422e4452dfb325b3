"""Handing paho's messages to the event loop in batches.

paho's network thread must never wait on the loop, yet one `call_soon_threadsafe` per message
costs a lock, a self-pipe write and a loop iteration each: at thousands of messages a second
that was the gateway's bottleneck. Here the thread appends to a deque and schedules a drain only
when none is pending; the loop takes everything that arrived meanwhile in one go.
"""
from __future__ import annotations

import asyncio
import collections
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(self, consume: Callable[[collections.deque[T]], None]):
        """`consume(items)` runs on the loop and pops what it takes (all, or a share: what it
        leaves is drained again at the loop's next turn)."""
        self.items: collections.deque[T] = collections.deque()
        self._consume = consume
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def put(self, item: T) -> None:
        """From any thread."""
        self.items.append(item)
        self._wake()

    def put_many(self, items: Iterable[T]) -> None:
        """From any thread: `items` in order, with one wake-up at most."""
        self.items.extend(items)
        self._wake()

    def _wake(self) -> None:
        # drain() clears the flag before it looks at the deque, so an item appended after its
        # last look always finds the flag clear and schedules another drain.
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        """On the loop thread; also callable directly, to take what waits now."""
        self._scheduled = False
        self._consume(self.items)
        if self.items and not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self.drain)
