"""The path from connectors to sinks: a bounded asyncio queue and one consumer that writes
batches to every sink.

    async with Pipeline([StoreSink(store)]) as pipeline:
        done = await pipeline.put_many(samples)   # waits while the queue is full (backpressure)
        done.add_done_callback(...)               # resolved once every sink took the samples

Memory is bounded by `queue_size`: when a sink is slow or down, producers wait in `put` instead
of the queue growing. A batch goes in whole when it fits; otherwise the part that fits goes in
and the producer waits, as room appears, for the rest (so a batch larger than the whole queue
still goes through, a part at a time). Waiting producers are served in arrival order, and a new
one queues behind them. The queue is one list the consumer slices batches off; a put that fits
costs one extend and no await (issue 11: an awaited asyncio.Queue.put per sample was a third of
the pipeline's CPU), and the consumer is woken once when data arrives, once when a batch is full
(or the queue is, or producers wait) and at the flush deadline, not once per sample. What a sink's error means (edge.errors):
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
dropped, and cancels those futures; a producer still waiting for room then gets RuntimeError
(the part of its batch already queued was dropped with the rest).
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
        self.queue_size = queue_size
        self._buffer: list[Sample] = []            # queued, oldest first
        # Producers waiting for room, in arrival order: [batch, next index to queue, woken].
        self._putters: collections.deque[list[Any]] = collections.deque()
        self._wakeup: asyncio.Future[None] | None = None   # the consumer's, while it waits
        self._want = 0                             # buffer length that should wake it
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
        self._wake_consumer()
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
        left = self._in_flight + self._buffer
        self._in_flight, self._buffer = [], []
        while self._putters:
            woken = self._putters.popleft()[2]
            if not woken.done():
                woken.set_exception(RuntimeError("pipeline stopped before the samples were queued"))
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
        """Queue samples in order; waits while the queue is full (see the module docstring).
        The returned future resolves once all of them are retired; it is cancelled if a stop
        with timeout drops them. Cancelling a waiting put leaves what it queued queued."""
        self._check_running()
        if type(samples) is Sample:     # a Sample is a tuple: its fields would pass for samples
            raise TypeError("put_many takes an iterable of Samples; put() takes one Sample")
        batch = samples if isinstance(samples, (list, tuple)) else list(samples)
        buf = self._buffer
        loop = asyncio.get_running_loop()
        if not batch:
            mark = self._received
        elif not self._putters and len(buf) + len(batch) <= self.queue_size:
            buf.extend(batch)
            self._received += len(batch)
            mark = self._received
        else:
            # [batch, how much of it is queued, resolved when all of it is, samples received then]
            entry: list[Any] = [batch, 0, loop.create_future(), 0]
            self._putters.append(entry)
            self._admit_waiting()
            if entry[1] < len(batch):
                self._wake_consumer()       # the queue is full: no use waiting for more
                try:
                    await entry[2]
                finally:
                    if entry[1] < len(batch) and any(e is entry for e in self._putters):
                        # Cancelled while waiting: what it queued stays queued.
                        self._putters = collections.deque(e for e in self._putters if e is not entry)
                        self._admit_waiting()
            mark = entry[3]
        if self._wakeup is not None and len(buf) >= self._want:
            self._wake_consumer()
        return self._retirement(mark, loop)

    def _retirement(self, mark: int, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """A future resolved once the first `mark` samples received are retired."""
        fut: asyncio.Future[None] = loop.create_future()
        if self._retired >= mark:
            fut.set_result(None)
        else:
            self._waiters.append((mark, fut))
        return fut

    def _admit_waiting(self) -> None:
        """Queue what fits of the waiting producers' batches, first come first served."""
        buf, putters = self._buffer, self._putters
        while putters:
            entry = putters[0]
            batch, start, woken, _ = entry
            room = self.queue_size - len(buf)
            if room <= 0:
                break
            end = min(len(batch), start + room)
            buf.extend(batch[start:end])
            self._received += end - start
            entry[1] = end
            if end < len(batch):
                break
            entry[3] = self._received
            putters.popleft()
            if not woken.done():
                woken.set_result(None)

    def _wake_consumer(self) -> None:
        w = self._wakeup
        if w is not None and not w.done():
            w.set_result(None)

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
                             len(self._buffer), rate, self._dropped,
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
            elif self._stopping and not self._buffer and not self._putters:
                return

    def _retire(self, n: int) -> None:
        self._retired += n
        self._last_progress = time.monotonic()
        while self._waiters and self._waiters[0][0] <= self._retired:
            _, fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    async def _next_batch(self) -> list[Sample]:
        """Up to batch_size samples, waiting at most flush_interval_s (from the first sample's
        arrival) for the batch to fill; [] when woken by stop() with nothing queued."""
        buf = self._buffer
        if not buf:
            if self._stopping:
                return []
            await self._wait(1, None)
            if not buf:
                return []
        if len(buf) < self.batch_size and not self._stopping and not self._putters:
            await self._wait(min(self.batch_size, self.queue_size), self.flush_interval_s)
        n = self.batch_size
        batch = buf[:n]
        del buf[:n]
        if self._putters:
            self._admit_waiting()
        return batch

    async def _wait(self, want: int, timeout_s: float | None) -> None:
        """Until the queue holds `want` samples, producers wait for room, stop() is called, or
        `timeout_s` passed: one future the producers resolve, not a wake per sample."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._wakeup, self._want = fut, want
        timer = None if timeout_s is None else loop.call_later(timeout_s, self._wake_consumer)
        try:
            await fut
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

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
                        len(self._buffer), self.queue_size)
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
