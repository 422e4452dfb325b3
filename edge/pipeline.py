"""The path from connectors to sinks: a bounded asyncio queue and one consumer that writes
batches to every sink.

    async with Pipeline([StoreSink(store)]) as pipeline:
        done = await pipeline.put_many(samples)   # waits while the queue is full (backpressure)
        done.add_done_callback(...)               # resolved once every sink took the samples

Memory is bounded by `queue_size`: when a sink is slow or down, producers wait in `put` instead
of the queue growing. What a sink's error means (edge.errors):
  RetryableSinkError / ThrottledSinkError  keep the batch and retry it with backoff (or after
                                           retry_after_s); nothing is dropped, the queue fills up
                                           and producers wait. The first failure of a streak is
                                           one WARNING, the recovery one INFO line;
  RejectedSinkError                        the data is refused (the sink has dead-lettered it, or
                                           says which samples in `exc.rejected`): counted,
                                           logged once per sink with its context, and the
                                           pipeline goes on;
  any other exception                      a bug or an unforeseen failure: retried a few times
                                           (it may be transient), then the batch is split in
                                           halves until the sample that fails is found; that one
                                           sample is rejected (and handed to `on_reject`), the
                                           rest is written. One poison sample never stops the
                                           others, and nothing is retried forever.
Sinks get the same batch in order; a batch is retired when every sink took or rejected it.
The future `put`/`put_many` return resolves then (in FIFO order), which is what lets a source
acknowledge its protocol's messages only once they are durable (MQTT, connectors.base.AckedBatch).
`stop()` drains what is queued before returning; with a timeout it gives up, names what it
dropped, and cancels those futures.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from .errors import RejectedSinkError, RetryableSinkError, ThrottledSinkError
from .model import Sample
from .sink import Sink

log = logging.getLogger(__name__)

_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 5.0
# Attempts at an unclassified error before the batch is split to find the sample causing it.
_UNCLASSIFIED_ATTEMPTS = 3

OnReject = Callable[[str, Sequence[Sample], str], None]
"""`(sink name, samples, reason)`: samples a sink failed on with an unclassified error, after
splitting; the gateway dead-letters them. Must not raise (errors are logged and ignored)."""


@dataclass(frozen=True)
class PipelineStats:
    received: int
    written: int          # samples taken by every sink
    rejected: int         # samples refused by at least one sink
    retries: int          # failed write attempts that were retried
    queue_depth: int
    samples_per_s: float  # written per second over the last stats() interval
    dropped: int = 0      # given up on at a stop with timeout
    failing_since_s: float | None = None   # seconds a sink has been failing, None when healthy
    idle_with_backlog_s: float = 0.0       # seconds since the last retirement while data waits

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Pipeline:
    def __init__(self, sinks: Sequence[Sink], *, queue_size: int = 10_000, batch_size: int = 500,
                 flush_interval_s: float = 0.5, on_reject: OnReject | None = None) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval_s <= 0:
            raise ValueError("queue_size and batch_size must be >= 1 and flush_interval_s > 0")
        self.sinks = list(sinks)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.on_reject = on_reject
        self._queue: asyncio.Queue[Sample] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._received = self._written = self._rejected = self._retries = self._dropped = 0
        self._retired = 0                          # samples written or rejected, FIFO order
        self._in_flight: list[Sample] = []         # the batch being delivered
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._rate_mark = (time.monotonic(), 0)
        self._last_progress = time.monotonic()
        self._failing_since: float | None = None
        self._reject_logged: set[str] = set()

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("pipeline already started")
        self._stopping = False
        self._last_progress = time.monotonic()
        self._task = asyncio.create_task(self._consume(), name="edge-pipeline")

    async def stop(self, timeout_s: float | None = None) -> int:
        """Write everything queued, then stop the consumer and close the sinks.

        With `timeout_s`, give up draining after that long (a sink that stays down would
        otherwise hold shutdown forever); what was not written is logged as an error with its
        count per device, and returned (0 when everything was written).
        """
        if self._task is None:
            return 0
        self._stopping = True
        dropped = 0
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except asyncio.TimeoutError:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            dropped = self._drop_unwritten(timeout_s or 0.0)
        finally:
            self._task = None
            for sink in self.sinks:
                try:
                    await sink.close()
                except Exception:
                    log.exception("closing sink %s failed", getattr(sink, "name", sink))
        return dropped

    def _drop_unwritten(self, timeout_s: float) -> int:
        left = list(self._in_flight)
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        self._in_flight = []
        per_device = collections.Counter(s.device_id for s in left)
        self._dropped += len(left)
        for _, fut in self._waiters:
            fut.cancel()      # never acknowledged: a redelivering source gets them again
        self._waiters.clear()
        if left:
            log.error("pipeline stopped after %.1fs with %d samples not written (sinks failing); "
                      "dropped per device: %s", timeout_s, len(left),
                      ", ".join(f"{d}={n}" for d, n in per_device.most_common()))
        return len(left)

    async def __aenter__(self) -> "Pipeline":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- producers
    async def put(self, sample: Sample) -> asyncio.Future[None]:
        """Queue one sample; waits while the queue is full. The returned future resolves when
        the sample is retired (written or rejected by every sink)."""
        return await self.put_many((sample,))

    async def put_many(self, samples: Iterable[Sample]) -> asyncio.Future[None]:
        """Queue samples in order; waits while the queue is full. The returned future resolves
        once all of them are retired; it is cancelled if a stop with timeout drops them."""
        self._check_running()
        for s in samples:
            await self._queue.put(s)
            self._received += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._retired >= self._received:
            fut.set_result(None)
        else:
            self._waiters.append((self._received, fut))
        return fut

    def _check_running(self) -> None:
        if self._task is None or self._stopping:
            raise RuntimeError("pipeline is not running (start() it, or it is stopping)")

    # ---------------------------------------------------------------- stats
    def stats(self) -> PipelineStats:
        now = time.monotonic()
        then, written_then = self._rate_mark
        rate = (self._written - written_then) / (now - then) if now > then else 0.0
        self._rate_mark = (now, self._written)
        backlog = self._received > self._retired
        return PipelineStats(self._received, self._written, self._rejected, self._retries,
                             self._queue.qsize(), rate, self._dropped,
                             None if self._failing_since is None else now - self._failing_since,
                             now - self._last_progress if backlog else 0.0)

    # ---------------------------------------------------------------- consumer
    async def _consume(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch:
                self._in_flight = batch
                await self._deliver(batch)
                self._in_flight = []
                self._retire(len(batch))
            elif self._stopping and self._queue.empty():
                return

    def _retire(self, n: int) -> None:
        self._retired += n
        self._last_progress = time.monotonic()
        while self._waiters and self._waiters[0][0] <= self._retired:
            _, fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    async def _next_batch(self) -> list[Sample]:
        """Up to batch_size samples, waiting at most flush_interval_s for the batch to fill."""
        batch: list[Sample] = []
        deadline = time.monotonic() + self.flush_interval_s
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            if self._stopping:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                # Short waits so a stop() is noticed promptly even when nothing arrives.
                batch.append(await asyncio.wait_for(self._queue.get(), min(remaining, 0.1)))
            except asyncio.TimeoutError:
                pass
        return batch

    async def _deliver(self, batch: list[Sample]) -> None:
        rejected = 0
        for sink in self.sinks:
            rejected = max(rejected, await self._write_until_done(sink, batch))
        self._rejected += rejected
        self._written += len(batch) - rejected

    async def _write_until_done(self, sink: Sink, batch: Sequence[Sample]) -> int:
        """Write `batch` to `sink`, retrying until it is taken or rejected; returns rejected count."""
        delay = _BACKOFF_FIRST_S
        unclassified = 0
        while True:
            try:
                await sink.write(batch)
                self._recovered(sink)
                return 0
            except RejectedSinkError as exc:
                self._recovered(sink)
                count = int(getattr(exc, "rejected_count", len(batch)))
                self._log_reject(sink, exc, batch)
                return count
            except ThrottledSinkError as exc:
                wait = max(exc.retry_after_s, delay)
                self._failing(sink, exc, wait)
            except RetryableSinkError as exc:
                wait = delay
                self._failing(sink, exc, wait)
            except Exception as exc:  # noqa: BLE001 - see the module docstring
                unclassified += 1
                if unclassified >= _UNCLASSIFIED_ATTEMPTS:
                    self._recovered(sink)
                    return await self._isolate(sink, batch, exc)
                wait = delay
                if unclassified == 1:
                    log.warning("sink %s raised an unexpected %s on a batch of %d: %s; retrying",
                                sink.name, type(exc).__name__, len(batch), exc,
                                exc_info=log.isEnabledFor(logging.DEBUG))
            self._retries += 1
            await asyncio.sleep(wait)
            delay = min(delay * 2, _BACKOFF_MAX_S)

    async def _isolate(self, sink: Sink, batch: Sequence[Sample], exc: Exception) -> int:
        """The batch keeps failing with an unclassified error: split it until the failing
        sample(s) are found; those are rejected, the rest written. Returns the rejected count."""
        if len(batch) == 1:
            reason = f"{type(exc).__name__}: {exc}"
            s = batch[0]
            log.error("sink %s cannot take %s/%s at %d (value %.80r): %s; sample rejected",
                      sink.name, s.device_id, s.signal, s.ts_ns, s.value, reason)
            if self.on_reject is not None:
                try:
                    self.on_reject(sink.name, list(batch), reason)
                except Exception:  # noqa: BLE001 - a broken hook must not stop the pipeline
                    log.exception("recording the rejected sample failed")
            return 1
        mid = len(batch) // 2
        return (await self._write_until_done(sink, batch[:mid])
                + await self._write_until_done(sink, batch[mid:]))

    def _failing(self, sink: Sink, exc: Exception, wait: float) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("sink %s cannot write (%s); keeping the data and retrying (queue %d of %d "
                        "samples; producers wait when it is full)", sink.name, exc,
                        self._queue.qsize(), self._queue.maxsize)
        else:
            log.debug("sink %s: %s; retrying in %.2fs", sink.name, exc, wait)

    def _recovered(self, sink: Sink) -> None:
        if self._failing_since is not None:
            log.info("sink %s writes again after %.1f s", sink.name,
                     time.monotonic() - self._failing_since)
            self._failing_since = None

    def _log_reject(self, sink: Sink, exc: Exception, batch: Sequence[Sample]) -> None:
        # Once per sink: a sink that rejects every batch must not flood the log; the counter
        # in stats() keeps the full tally.
        if sink.name in self._reject_logged:
            return
        self._reject_logged.add(sink.name)
        first = batch[0]
        log.error("sink %s rejected data (batch of %d, first %s/%s at %d): %s; further rejections "
                  "by this sink are counted in stats only", sink.name, len(batch), first.device_id,
                  first.signal, first.ts_ns, exc)
