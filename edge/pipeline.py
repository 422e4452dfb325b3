"""The path from connectors to sinks: a bounded asyncio queue and one consumer that writes
batches to every sink.

    async with Pipeline([StoreSink(store)]) as pipeline:
        await pipeline.put(sample)           # waits while the queue is full (backpressure)

Memory is bounded by `queue_size`: when a sink is slow or down, producers wait in `put` instead
of the queue growing. What a sink's error means (edge.errors):
  RetryableSinkError / ThrottledSinkError  keep the batch and retry it with backoff (or after
                                           retry_after_s); nothing is dropped, the queue fills up
                                           and producers wait;
  RejectedSinkError                        the data is refused: counted, logged once per sink
                                           with its context, and the pipeline goes on;
  any other exception                      treated as retryable (a bug must not lose data),
                                           logged with its traceback.
Sinks get the same batch in order; a batch is retired when every sink took or rejected it.
`stop()` drains what is queued before returning.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .errors import RejectedSinkError, RetryableSinkError, ThrottledSinkError
from .model import Sample
from .sink import Sink

log = logging.getLogger(__name__)

_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 5.0


@dataclass(frozen=True)
class PipelineStats:
    received: int
    written: int          # samples taken by every sink
    rejected: int         # samples refused by at least one sink
    retries: int          # failed write attempts that were retried
    queue_depth: int
    samples_per_s: float  # written per second over the last stats() interval

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Pipeline:
    def __init__(self, sinks: Sequence[Sink], *, queue_size: int = 10_000, batch_size: int = 500,
                 flush_interval_s: float = 0.5) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval_s <= 0:
            raise ValueError("queue_size and batch_size must be >= 1 and flush_interval_s > 0")
        self.sinks = list(sinks)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._queue: asyncio.Queue[Sample] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._received = self._written = self._rejected = self._retries = 0
        self._rate_mark = (time.monotonic(), 0)
        self._reject_logged: set[str] = set()

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("pipeline already started")
        self._stopping = False
        self._task = asyncio.create_task(self._consume(), name="edge-pipeline")

    async def stop(self, timeout_s: float | None = None) -> None:
        """Write everything queued, then stop the consumer and close the sinks.

        With `timeout_s`, give up draining after that long (a sink that stays down would
        otherwise hold shutdown forever); what was not written is logged as an error with its count.
        """
        if self._task is None:
            return
        self._stopping = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except asyncio.TimeoutError:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            log.error("pipeline stopped after %.1fs with %d samples not written (sinks failing)",
                      timeout_s, self._received - self._written - self._rejected)
        finally:
            self._task = None
            for sink in self.sinks:
                try:
                    await sink.close()
                except Exception:
                    log.exception("closing sink %s failed", getattr(sink, "name", sink))

    async def __aenter__(self) -> "Pipeline":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- producers
    async def put(self, sample: Sample) -> None:
        """Queue one sample; waits while the queue is full."""
        self._check_running()
        await self._queue.put(sample)
        self._received += 1

    async def put_many(self, samples: Iterable[Sample]) -> None:
        self._check_running()
        for s in samples:
            await self._queue.put(s)
            self._received += 1

    def _check_running(self) -> None:
        if self._task is None or self._stopping:
            raise RuntimeError("pipeline is not running (start() it, or it is stopping)")

    # ---------------------------------------------------------------- stats
    def stats(self) -> PipelineStats:
        now = time.monotonic()
        then, written_then = self._rate_mark
        rate = (self._written - written_then) / (now - then) if now > then else 0.0
        self._rate_mark = (now, self._written)
        return PipelineStats(self._received, self._written, self._rejected, self._retries,
                             self._queue.qsize(), rate)

    # ---------------------------------------------------------------- consumer
    async def _consume(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch:
                await self._deliver(batch)
            elif self._stopping and self._queue.empty():
                return

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

    async def _write_until_done(self, sink: Sink, batch: list[Sample]) -> int:
        """Write `batch` to `sink`, retrying until it is taken or rejected; returns rejected count."""
        delay = _BACKOFF_FIRST_S
        while True:
            try:
                await sink.write(batch)
                return 0
            except RejectedSinkError as exc:
                count = int(getattr(exc, "rejected_count", len(batch)))
                self._log_reject(sink, exc, batch)
                return count
            except ThrottledSinkError as exc:
                wait = max(exc.retry_after_s, delay)
                log.debug("sink %s throttled; retrying in %.2fs", sink.name, wait)
            except RetryableSinkError as exc:
                wait = delay
                log.debug("sink %s: %s; retrying in %.2fs", sink.name, exc, wait)
            except Exception:
                wait = delay
                if delay == _BACKOFF_FIRST_S:   # once per failure streak, not on every retry
                    log.exception("sink %s raised an unexpected error; retrying the batch",
                                  sink.name)
            self._retries += 1
            await asyncio.sleep(wait)
            delay = min(delay * 2, _BACKOFF_MAX_S)

    def _log_reject(self, sink: Sink, exc: Exception, batch: list[Sample]) -> None:
        # Once per sink: a sink that rejects every batch must not flood the log; the counter
        # in stats() keeps the full tally.
        if sink.name in self._reject_logged:
            return
        self._reject_logged.add(sink.name)
        first = batch[0]
        log.error("sink %s rejected data (batch of %d, first %s/%s at %d): %s; further rejections "
                  "by this sink are counted in stats only", sink.name, len(batch), first.device_id,
                  first.signal, first.ts_ns, exc)
