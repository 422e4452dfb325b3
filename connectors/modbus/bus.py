"""The bus scheduler: units on one line (an RS-485 bus, a serial server, a Modbus TCP gateway)
share one connection and take turns on it.

A line carries one request at a time, and RTU needs a silence between frames, so every request
of every unit on a bus goes through `Bus.transact`: it waits for its turn (which costs no timeout
of its own), keeps the inter-frame pause after the previous answer, and then gives the unit its
own timeout for the answer. A silent unit therefore costs the others at most its timeout per
request, never a stalled bus. Distinct buses (separate TCP devices) run concurrently.

Modbus TCP matches answers to requests by transaction id, so a bus whose link does that (see
mbap.py) may be opened with `max_in_flight` > 1: up to that many requests of its units wait for
their answers at once (devices that take one at a time are the default, 1).

A unit that answers after its timeout still answers. RTU frames carry no transaction id, so on
an RTU line that late answer, landing while the next request waits, would be taken for the next
answer of the same unit (the protocol library already drops an answer from another unit id, and
on Modbus TCP one with another transaction id). So after a timeout on such a line the bus keeps
the line quiet for the timed-out request's timeout again (`drain_after_timeout`): an answer that
arrives while no request waits is discarded. An answer later than twice the timeout is not
caught; the source also rejects an answer whose function or length is not its request's.

How a request runs (the hot path of a gateway polling a thousand units, so without a coroutine,
a lock or a timer of its own per request): `Bus.submit` queues a `Job`; when the line is free
(fewer than `max_in_flight` in flight, the pause kept) the bus starts it, either on the link
itself (`MbapLink.send`, which writes the frame and resolves the job from `buffer_updated`) or,
for a library's coroutine (pymodbus, RTU), in a task (`Bus.start_call`). A finished job starts
the next one at once, from the callback that finished it. One watchdog timer per bus, armed
for the earliest deadline in flight, times requests out. A job may be given a start time
(`at`): the poll schedule's next slot, so a unit's task wakes once per poll (for its answer),
not also to send; the jobs of a bus due at the same instant share one timer. `accept` checks
an answer is its request's before the next request goes, so that the line is held quiet (see
above) before anything else is sent.

No protocol library here: the link (connect, close, connected) is made by the source, which is
the one module importing pymodbus.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any, Awaitable, Callable, Hashable, Protocol

_EARLY_S = 1e-6   # a timer may run this early (asyncio runs timers due within its clock's resolution)


class Link(Protocol):
    """The shared connection, as the scheduler needs it."""

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> bool: ...

    def close(self) -> None: ...


class BusTimeout(Exception):
    """A unit did not answer within its timeout (the bus itself may be fine)."""


class StaleAnswer(Exception):
    """An answer that is not its request's (its `accept` check failed): discarded."""

    def __init__(self, answer: Any):
        super().__init__("the answer is another request's")
        self.answer = answer


Accept = Callable[[Any], bool]


class Job:
    """One request on a bus. `request` is for whoever starts it (the link's frame parameters,
    or the coroutine function of `Bus.transact`); that starter may keep a `token` and an
    `owner` whose `forget(job)` is called when the job times out. The starter ends the job
    with `resolve` or `fail`."""

    __slots__ = ("bus", "start", "request", "timeout_s", "accept", "future", "deadline",
                 "queued_at", "token", "owner", "finished")

    def __init__(self, bus: "Bus", start: Callable[["Job"], None], request: Any, timeout_s: float,
                 accept: Accept | None, future: asyncio.Future[Any]):
        self.bus = bus
        self.start = start
        self.request = request
        self.timeout_s = timeout_s
        self.accept = accept
        self.future = future
        self.deadline = math.inf
        self.queued_at = 0.0    # monotonic time it joined the queue (its poll's start)
        self.token: Any = None
        self.owner: Any = None
        self.finished = False

    def resolve(self, result: Any) -> None:
        self.bus._finish(self, result, None)

    def fail(self, error: BaseException) -> None:
        self.bus._finish(self, None, error)


class Bus:
    def __init__(self, key: Hashable, name: str, link: Link, pause_s: float, *,
                 drain_after_timeout: bool = False, max_in_flight: int = 1):
        self.key = key
        self.name = name
        self.link = link
        self.pause_s = pause_s
        self.drain_after_timeout = drain_after_timeout
        self.max_in_flight = max_in_flight
        self.users = 0
        self.requests = 0
        self.timeouts = 0
        self.stale_answers = 0   # answers that were not their request's (see `accept`)
        self._connecting = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._queue: deque[Job] = deque()
        self._due: dict[float, list[Job]] = {}   # jobs waiting for their start time, by that time
        self._flying: set[Job] = set()
        self._quiet_from = 0.0  # monotonic time the line went quiet (end of the last answer)
        self._dispatching = False
        self._pause_timer: asyncio.TimerHandle | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._watchdog_at = math.inf

    async def ensure_connected(self, timeout_s: float) -> bool:
        """Connect the shared link if it is not (first user, or after the line dropped)."""
        async with self._connecting:
            if self.link.connected:
                return True
            return await asyncio.wait_for(self.link.connect(), timeout_s)

    def submit(self, start: Callable[[Job], None], request: Any, timeout_s: float, *,
               accept: Accept | None = None, at: float | None = None) -> Job:
        """Queue a request: `start(job)` when its turn comes (not before the monotonic time
        `at`), after the inter-frame pause. Its future gets the answer, BusTimeout after
        `timeout_s` from the start (the wait for the turn is not counted), StaleAnswer when
        `accept(answer)` is false, or the link's error. A job whose future is cancelled still
        holds the line until its answer or its timeout (the unit may still be answering)."""
        job = Job(self, start, request, timeout_s, accept, self._loop.create_future())
        if at is not None and at > time.monotonic():
            # Units polled on the same grid are due at the same instant: one timer per instant
            # and bus starts them all (not a timer, heap entry and callback per request).
            due = self._due.get(at)
            if due is None:
                due = self._due[at] = []
                self._loop.call_at(at, self._start_due, at)
            due.append(job)
        else:
            self._enqueue(job)
        return job

    async def transact(self, call: Callable[[], Awaitable[Any]], timeout_s: float, *,
                       accept: Accept | None = None) -> Any:
        """`call()` alone on the line, as `submit` runs a request (in a task of its own)."""
        return await self.submit(self.start_call, call, timeout_s, accept=accept).future

    def start_call(self, job: Job) -> None:
        """Start a job whose request is a coroutine function (a protocol library's call)."""
        job.token = self._loop.create_task(self._call(job))
        job.owner = self

    async def _call(self, job: Job) -> None:
        try:
            result = await job.request()
        except asyncio.CancelledError:
            return          # timed out: the watchdog has ended the job
        except Exception as err:  # noqa: BLE001 - the waiter gets it
            job.fail(err)
            return
        job.resolve(result)

    def forget(self, job: Job) -> None:
        job.token.cancel()

    def hold_quiet(self, drain_s: float) -> None:
        """Keep the line quiet for `drain_s` more (after an answer that was not its request's,
        the real one may still be on its way)."""
        self._quiet_from = max(self._quiet_from, time.monotonic() + drain_s)

    # the queue

    def _start_due(self, at: float) -> None:
        for job in self._due.pop(at, ()):
            self._enqueue(job)

    def _enqueue(self, job: Job) -> None:
        job.queued_at = time.monotonic()
        self._queue.append(job)
        if not self._dispatching:
            self._dispatch()

    def _pause_over(self) -> None:
        self._pause_timer = None
        self._dispatch()

    def _dispatch(self) -> None:
        self._dispatching = True
        try:
            queue, flying = self._queue, self._flying
            while queue and len(flying) < self.max_in_flight:
                now = time.monotonic()
                ready_at = self._quiet_from + self.pause_s
                if ready_at > now:
                    if self._pause_timer is None:
                        self._pause_timer = self._loop.call_at(ready_at, self._pause_over)
                    return
                job = queue.popleft()
                if job.future.done():   # cancelled while it waited for its turn
                    continue
                self.requests += 1
                job.deadline = deadline = now + job.timeout_s
                flying.add(job)
                if deadline < self._watchdog_at:
                    self._arm(deadline)
                try:
                    job.start(job)
                except Exception as err:  # noqa: BLE001 - e.g. the link is down: the waiter gets it
                    self._finish(job, None, err)
        finally:
            self._dispatching = False

    def _finish(self, job: Job, result: Any, error: BaseException | None, *, timed_out: bool = False) -> None:
        if job.finished:
            return
        job.finished = True
        self._flying.discard(job)
        drain_s = 0.0
        if timed_out:
            drain_s = job.timeout_s if self.drain_after_timeout else 0.0
        elif error is None and job.accept is not None and not job.accept(result):
            # Another request's answer (RTU has no transaction id): its own may still come, so
            # the line is held quiet for it before the next request goes.
            self.stale_answers += 1
            drain_s = job.timeout_s
            error = StaleAnswer(result)
        self._quiet_from = time.monotonic() + drain_s
        fut = job.future
        if not fut.done():
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)
        if self._queue and not self._dispatching:
            self._dispatch()

    # timeouts: one timer per bus, at the earliest deadline in flight

    def _arm(self, at: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = self._loop.call_at(at, self._expire)
        self._watchdog_at = at

    def _expire(self) -> None:
        self._watchdog, self._watchdog_at = None, math.inf
        now = time.monotonic() + _EARLY_S
        for job in [j for j in self._flying if j.deadline <= now]:
            if job.owner is not None:
                job.owner.forget(job)   # its late answer is stale, not this job's
            if not job.future.done():
                self.timeouts += 1
            self._finish(job, None, BusTimeout(f"no answer within {job.timeout_s:g} s"), timed_out=True)
        if self._flying:
            earliest = min(j.deadline for j in self._flying)
            if earliest < self._watchdog_at:
                self._arm(earliest)

    def close(self) -> None:
        """The last unit left: stop the timers, close the link, and fail what still waits for
        its turn (a poll of a unit that left while it was queued must not wait forever)."""
        for timer in (self._pause_timer, self._watchdog):
            if timer is not None:
                timer.cancel()
        self._pause_timer = self._watchdog = None
        self._watchdog_at = math.inf
        self.link.close()
        queued, self._queue = list(self._queue), deque()
        for waiting in self._due.values():   # their timers find nothing left to start
            queued.extend(waiting)
        self._due.clear()
        for job in queued:
            job.finished = True
            if not job.future.done():
                job.future.set_exception(ConnectionError("bus closed"))


class Buses:
    """The open buses by key; a bus is closed when its last unit leaves."""

    def __init__(self) -> None:
        self._open: dict[Hashable, Bus] = {}

    def join(self, key: Hashable, name: str, make_link: Callable[[], Link], pause_s: float, *,
             drain_after_timeout: bool = False, max_in_flight: int = 1) -> Bus:
        """The open bus `key`, or a new one; a bus keeps the settings of the unit that opened it."""
        bus = self._open.get(key)
        if bus is None:
            bus = self._open[key] = Bus(key, name, make_link(), pause_s, drain_after_timeout=drain_after_timeout,
                                        max_in_flight=max_in_flight)
        bus.users += 1
        return bus

    def leave(self, bus: Bus) -> None:
        bus.users -= 1
        if bus.users <= 0 and self._open.get(bus.key) is bus:
            del self._open[bus.key]
            bus.close()

    def __len__(self) -> int:
        return len(self._open)


# One registry per process: the gateway runs every device in one event loop. Keys include the
# running loop, so buses made in one loop (a test) are never reused from another.
BUSES = Buses()


def bus_key(key: Hashable) -> Hashable:
    return (id(asyncio.get_running_loop()), key)
