"""Runs one upstream sink from the outbox: read oldest first, send, move the cursor, repeat.

    fwd = Forwarder(store, make_sink(cfg), retry_min_s=cfg.retry_min_s, retry_max_s=cfg.retry_max_s)
    await fwd.run(stop_event)       # until stop is set; never raises for a sink's failure

Order and liveness: rows go out in outbox order, so after an outage the backlog drains oldest
first and live data, being the newest rows, follows as soon as the forwarder has caught up; a
batch is as large as the sink takes (`max_batch` points), so draining is limited by the far side,
not by round trips.

Failures (edge.sinks.base): a retryable failure or a throttle waits (exponential back-off with
jitter, or the server's Retry-After) and sends the same points again; the cursor does not move,
so nothing is skipped and a crash at any point sends again at most what was unconfirmed. A
rejection splits the batch in halves until the refused points are found: those are dead-lettered
and counted as rejected, the rest is delivered.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Sequence

from . import outbox
from .errors import RejectedSinkError, RetryableSinkError, ThrottledSinkError
from .outbox import Item
from .sinks.base import Batch, DeviceInfo, Sink
from .store import Store

log = logging.getLogger(__name__)


class Forwarder:
    def __init__(self, store: Store, sink: Sink, *, retry_min_s: float = 0.5,
                 retry_max_s: float = 30.0, idle_s: float = 0.2) -> None:
        self.store = store
        self.sink = sink
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.idle_s = idle_s
        self._devices: dict[str, DeviceInfo] = {}
        self._stop = asyncio.Event()
        self._failures = 0
        self._rejections = 0
        self._cursor = outbox.register(store, sink.name)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Forward until `stop` (or `stop()`) is set; whatever was confirmed is acked."""
        if stop is not None:
            self._stop = stop
        while not self._stop.is_set():
            sent = await self.step()
            if sent is None:
                await self._sleep(self.idle_s)

    def stop(self) -> None:
        self._stop.set()

    async def step(self) -> int | None:
        """Send the next batch; the points sent, or None when the outbox was empty for this sink.
        Returns early (0) when stopped while waiting to retry."""
        rows = await asyncio.to_thread(outbox.read, self.store, self.sink.name, self._cursor,
                                       max_items=self.sink.max_batch)
        if not rows:
            return None
        items = [item for row in rows for item in row.items]
        await self._refresh_devices(items)
        sent = 0
        for i in range(0, len(items), self.sink.max_batch):
            done = await self._deliver(items[i:i + self.sink.max_batch])
            if done is None:
                return 0
            sent += done
        await asyncio.to_thread(outbox.ack, self.store, self.sink.name, rows[-1].seq, sent=sent)
        self._cursor = rows[-1].seq
        if self._failures:
            log.info("sink %s: delivering again", self.sink.name)
            self._failures = 0
        return sent

    async def _deliver(self, items: Sequence[Item]) -> int | None:
        """Send `items`, isolating refused points; the points delivered, None when stopped."""
        try:
            ok = await self._send_retrying(items)
        except RejectedSinkError as exc:
            if len(items) == 1:
                reason = f"sink {self.sink.name}: {getattr(exc, 'reason', 'rejected')}"
                # Once with context; after that the count (rejected) and the dead letters tell.
                level = logging.DEBUG if self._rejections else logging.WARNING
                self._rejections += 1
                log.log(level, "sink %s: point refused and dead-lettered (%d so far): %s",
                        self.sink.name, self._rejections, exc)
                await asyncio.to_thread(outbox.record_failure, self.store, self.sink.name, str(exc),
                                        connected=True, rejected=1, dead=[(items[0], reason)])
                return 0
            mid = len(items) // 2
            first = await self._deliver(items[:mid])
            if first is None:
                return None
            second = await self._deliver(items[mid:])
            return None if second is None else first + second
        return len(items) if ok else None

    async def _send_retrying(self, items: Sequence[Item]) -> bool:
        """True once sent; False when stopped first. RejectedSinkError passes through."""
        while not self._stop.is_set():
            try:
                await self.sink.send(Batch(items, self._devices))
                return True
            except ThrottledSinkError as exc:
                wait = max(exc.retry_after_s, 0.0)
                await self._failed(exc, wait, connected=True)
            except RejectedSinkError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever it is, the rows stay queued
                if not isinstance(exc, RetryableSinkError):
                    # Not a failure the sink knows: a bug. Keep the data and say where it is.
                    log.exception("sink %s: unexpected error sending a batch", self.sink.name)
                wait = min(self.retry_max_s, self.retry_min_s * 2 ** min(self._failures, 16))
                await self._failed(exc, wait * random.uniform(0.5, 1.0), connected=self.sink.connected)
        return False

    async def _failed(self, exc: Exception, wait_s: float, *, connected: bool) -> None:
        if self._failures == 0:
            log.warning("sink %s: %s; retrying (backlog kept in the outbox)", self.sink.name, exc)
        self._failures += 1
        await asyncio.to_thread(outbox.record_failure, self.store, self.sink.name, str(exc),
                                connected=connected, retried=1)
        await self._sleep(wait_s)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def _refresh_devices(self, items: Sequence[Item]) -> None:
        if any(item.device_id not in self._devices for item in items):
            records = await asyncio.to_thread(self.store.devices)
            devices = {r.id: DeviceInfo(r.line, r.protocol) for r in records}
            # A device not in the registry gets no line/protocol tags; do not look it up again.
            devices.update({i.device_id: DeviceInfo() for i in items if i.device_id not in devices})
            self._devices = devices
