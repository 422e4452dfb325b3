"""Runs one device's Source until cancelled: connect, check identity, stream, and on failure
mark the device offline and retry with backoff (Home Assistant's coordinator, one per device).

    supervisor = DeviceSupervisor(source, emit, observer)
    task = asyncio.create_task(supervisor.run())     # cancel the task to stop

Failure handling, in order:
- `connect()` raises SourceError: the device is offline; retry after a backoff delay.
- the stream raises SourceError: the device goes offline at that instant; one BAD sample per
  signal is emitted with that timestamp (value BAD_VALUE, the empty string), so rollups stop
  counting its last state and power there instead of stretching them over the outage.
- the first failure after being online (or at start) logs ONE warning and calls
  `observer.on_offline`; further failed retries stay quiet; the recovery logs ONE info line.
- `emit` blocks (the store is full or locked and the pipeline's queue has filled): a polled
  source (one with `poll_interval_s`) is not polled meanwhile, so one `emit` call blocking
  longer than `stall_threshold_s` (3 poll intervals, at least `stall_min_s`) emits one BAD
  sample per signal stamped when the block began, logs one warning and counts `stalls`;
  rollups then stop the last state there instead of stretching it over the stall. A source
  without `poll_interval_s` (MQTT: the broker keeps the data) has nothing to mark.
- any other exception out of a source is a bug in it, handled like SourceError (logged with
  its traceback once) so one device cannot stop the gateway. Exceptions out of `emit` or the
  observer are the caller's and propagate.
- the identity seen at connect is compared with `device.expected_identity` (or, without one,
  with the identity seen at the previous connect): a different fingerprint is an
  `identity_changed` event, and collection goes on.
"""
from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import random
import time
from typing import Any, Awaitable, Callable, Mapping, Protocol

from connectors.backoff import Backoff
from connectors.base import AckedBatch, ReportsIdentity, Source
from edge.errors import SourceError
from edge.plausibility import MAX_PAST_S, scan_batch
from edge.model import IdentityEvidence, Quality, Sample, now_ns

BAD_VALUE = ""
IDENTITY_CHANGED = "identity_changed"

Emit = Callable[[list[Sample]], Awaitable[Any]]
"""Hands a batch on (edge.pipeline.Pipeline.put_many). It may return a future that resolves
once the samples are durable; an AckedBatch is acknowledged to its source only then (right
away when emit returns no future)."""


class Observer(Protocol):
    """What the supervisor tells the application (which writes it to the store). Methods may
    be plain or async; an async one is awaited (on_event from a source is scheduled)."""

    def on_online(self, device_id: str, identity: IdentityEvidence, ts_ns: int) -> Any: ...
    def on_offline(self, device_id: str, error: str, ts_ns: int) -> Any: ...
    def on_event(self, device_id: str, kind: str, data: dict[str, Any], ts_ns: int) -> Any: ...


class LinkState(str, enum.Enum):
    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"
    STOPPED = "stopped"


class DeviceSupervisor:
    def __init__(self, source: Source, emit: Emit, observer: Observer, *,
                 backoff_initial_s: float = 1.0, backoff_max_s: float = 60.0,
                 stall_min_s: float = 5.0, max_past_s: float = MAX_PAST_S,
                 rng: random.Random | None = None):
        self.source = source
        self.max_past_s = max_past_s
        self.timestamps_fixed = 0   # samples whose device clock was implausible (edge.plausibility)
        self.device = source.device
        self.emit = emit
        self.observer = observer
        self.state = LinkState.CONNECTING
        self.last_error: str | None = None
        self.identity: IdentityEvidence | None = None
        self.samples = 0
        self.samples_bad = 0        # of `samples`, BAD ones (the source could not read a value)
        self.reconnects = 0
        self.connects = 0
        self.stalls = 0
        self.stall_threshold_s = _stall_threshold(source, stall_min_s)
        self._backoff = Backoff(initial_s=backoff_initial_s, max_s=backoff_max_s, rng=rng)
        self._log = logging.getLogger(f"shangyun.connectors.{self.device.protocol}")
        self._reported_offline = False
        self._identity_reported: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_requested = False
        if hasattr(source, "on_event"):
            source.on_event = self._source_event  # type: ignore[attr-defined]
        on_reject = getattr(observer, "on_reject", None)   # payload dead letters (edge.rejects)
        if on_reject is not None and hasattr(source, "on_reject"):
            source.on_reject = on_reject  # type: ignore[attr-defined]
        if isinstance(source, ReportsIdentity):
            source.on_identity = self._late_identity

    @property
    def payload_errors(self) -> int:
        return int(getattr(self.source, "payload_errors", 0))

    @property
    def counters(self) -> dict[str, Any]:
        """The source's own counts for status and the API, for sources that keep some:
        `status_counters()` (Modbus: skipped_polls, stale_answers) and `time_sources()`
        (samples per timestamp origin). Empty for a source that keeps none."""
        out: dict[str, Any] = {}
        status_counters = getattr(self.source, "status_counters", None)
        if callable(status_counters):
            out.update(status_counters())
        time_sources = getattr(self.source, "time_sources", None)
        if callable(time_sources):
            out["time_sources"] = dict(time_sources())
        return out

    def request_stop(self) -> None:
        """Ask `run()` to end at its next step. Callers also cancel the task; the flag is what
        still ends it if a cancellation is lost: Python 3.11's `asyncio.wait_for` (used here and
        inside the protocol libraries) can swallow a cancel that arrives as its inner call
        completes, and the loop would otherwise reconnect forever."""
        self._stop_requested = True

    async def run(self) -> None:
        try:
            while not self._stop_requested:
                self.state = LinkState.CONNECTING
                try:
                    identity = await self._connect()
                except SourceError as err:
                    await self._offline(err, link_was_up=False)
                else:
                    await self._online(identity)
                    try:
                        await self._stream()
                    except SourceError as err:
                        await self._offline(err, link_was_up=True)
                await self._quietly_close()
                if not self._stop_requested:
                    await asyncio.sleep(self._backoff.next_delay())
        finally:
            self.state = LinkState.STOPPED
            await asyncio.shield(self._quietly_close())

    async def _connect(self) -> IdentityEvidence:
        try:
            return await self.source.connect()
        except SourceError:
            raise
        except Exception as err:  # noqa: BLE001 - a source bug must not end supervision
            raise self._as_source_error(err, "connect") from err

    async def _stream(self) -> None:
        stream = self.source.samples()
        try:
            while not self._stop_requested:
                try:
                    batch = await stream.__anext__()
                except StopAsyncIteration:
                    raise SourceError("sample stream ended") from None
                except SourceError:
                    raise
                except Exception as err:  # noqa: BLE001
                    raise self._as_source_error(err, "samples") from err
                blocked_at_ns = now_ns()
                stall_threshold_s = self.stall_threshold_s
                started = time.monotonic() if stall_threshold_s is not None else 0.0
                # One pass for the BAD count and the timestamp check (edge.plausibility).
                fixed, n_fixed, n_bad = scan_batch(batch, blocked_at_ns, self.max_past_s)
                self.samples += len(batch)
                self.samples_bad += n_bad
                if n_fixed:
                    self._implausible_clock(n_fixed)
                # The ack stays with the source's own batch: `fixed` may be a new plain list.
                done = await self.emit(fixed)
                if isinstance(batch, AckedBatch) and batch.ack is not None:
                    _ack_when_done(batch.ack, done)
                if stall_threshold_s is not None:
                    blocked_s = time.monotonic() - started
                    if blocked_s > stall_threshold_s:
                        await self._stalled(blocked_at_ns, blocked_s)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # noqa: BLE001 - the link is gone anyway
                    self._log.debug("device %s: closing the sample stream failed", self.device.id, exc_info=True)

    async def _stalled(self, since_ns: int, blocked_s: float) -> None:
        self.stalls += 1
        self._log.warning("device %s: not polled for %.1f s (storage stalled)", self.device.id, blocked_s)
        await self.emit(self._bad_batch(since_ns))

    def _bad_batch(self, ts_ns: int) -> list[Sample]:
        """One BAD sample per signal: from `ts_ns` on, the device's values are unknown."""
        return [Sample(self.device.id, s.name, ts_ns, BAD_VALUE, Quality.BAD) for s in self.device.signals]

    def _implausible_clock(self, n: int) -> None:
        if not self.timestamps_fixed:   # once per supervisor: the count keeps the tally
            self._log.warning("device %s: %d samples with implausible timestamps (device clock "
                              "not set?); stored at arrival time and marked uncertain",
                              self.device.id, n)
        self.timestamps_fixed += n

    async def _online(self, identity: IdentityEvidence) -> None:
        ts = now_ns()
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
        if self._reported_offline:
            self._log.info("device %s: back online (%s)", self.device.id, identity.endpoint or self.device.protocol)
        self._reported_offline = False
        self._backoff.reset()
        self.state = LinkState.ONLINE
        self.last_error = None
        await _call(self.observer.on_online, self.device.id, identity, ts)
        await self._check_identity(identity, ts)
        if identity.fingerprint() or self.identity is None:
            # An identity the device did not present this time (a missing or late MQTT birth
            # message) is unknown, not changed: the last evidence seen stays the reference.
            self.identity = identity

    async def _offline(self, err: SourceError, *, link_was_up: bool) -> None:
        ts = now_ns()
        self.state = LinkState.OFFLINE
        self.last_error = str(err) or type(err).__name__
        if link_was_up:
            await self.emit(self._bad_batch(ts))
        if not self._reported_offline:
            self._reported_offline = True
            self._log.warning("device %s: offline: %s (retrying)", self.device.id, self.last_error)
            await _call(self.observer.on_offline, self.device.id, self.last_error, ts)
        else:
            self._log.debug("device %s: still offline: %s", self.device.id, self.last_error)

    async def _check_identity(self, seen: IdentityEvidence, ts: int) -> None:
        reference = self.device.expected_identity or self.identity
        if reference is None:
            return
        expected, got = reference.fingerprint(), seen.fingerprint()
        if not expected or not got or got == expected or got in self._identity_reported:
            return
        self._identity_reported.add(got)
        self._log.warning("device %s: identity changed from %r to %r", self.device.id, expected, got)
        await _call(self.observer.on_event, self.device.id, IDENTITY_CHANGED,
                    {"expected": expected, "seen": got, "identity": seen.to_dict()}, ts)

    def _late_identity(self, identity: IdentityEvidence) -> None:
        """Evidence the device presented after connect (a late MQTT birth): checked and
        recorded like the evidence seen at connect."""
        async def record() -> None:
            ts = now_ns()
            await self._check_identity(identity, ts)
            if identity.fingerprint():
                self.identity = identity
            on_identity = getattr(self.observer, "on_identity", None)
            if on_identity is not None:
                await _call(on_identity, self.device.id, identity, ts)
        task = asyncio.ensure_future(record())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _source_event(self, kind: str, data: Mapping[str, Any]) -> None:
        result = self.observer.on_event(self.device.id, kind, dict(data), now_ns())
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _as_source_error(self, err: Exception, where: str) -> SourceError:
        level = logging.DEBUG if self._reported_offline else logging.ERROR  # once per outage
        self._log.log(level, "device %s: unexpected error in %s", self.device.id, where, exc_info=err)
        return SourceError(f"{where}: {type(err).__name__}: {err}")

    async def _quietly_close(self) -> None:
        try:
            await self.source.close()
        except Exception:  # noqa: BLE001 - close must not turn a stop into a crash
            self._log.debug("device %s: close failed", self.device.id, exc_info=True)


def _stall_threshold(source: Source, min_s: float) -> float | None:
    interval = getattr(source, "poll_interval_s", None)
    if interval is None:
        return None
    return max(min_s, 3 * float(interval))


def _ack_when_done(ack: Callable[[], None], done: Any) -> None:
    def fire(fut: Any = None) -> None:
        if fut is not None and (fut.cancelled() or fut.exception() is not None):
            return      # dropped, not stored: the source's protocol redelivers it
        try:
            ack()
        except Exception:  # noqa: BLE001 - a failed ack means a redelivery, not a lost sample
            logging.getLogger("shangyun.connectors").debug("ack failed", exc_info=True)
    if isinstance(done, asyncio.Future):
        done.add_done_callback(fire)
    else:
        fire()


async def _call(fn: Callable[..., Any], *args: Any) -> None:
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


async def stop_all(running: Mapping[DeviceSupervisor, asyncio.Task[Any]],
                   timeout_s: float = 10.0) -> list[str]:
    """Stop supervisors and wait for their tasks; returns the ids of any still running after
    `timeout_s`. A task whose cancellation was lost (see `request_stop`) is cancelled again
    until it ends, so a stop never waits forever on one device."""
    for sup in running:
        sup.request_stop()
    pending = {t for t in running.values() if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending and loop.time() < deadline:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.5, deadline - loop.time()))
    for t in running.values():
        if t.done() and not t.cancelled() and t.exception() is not None:
            logging.getLogger("shangyun.connectors").debug("supervisor ended with %r", t.exception())
    return [sup.device.id for sup, t in running.items() if not t.done()]
