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

No protocol library here: the link (connect, close, connected) is made by the source, which is
the one module importing pymodbus.
"""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Hashable, Protocol, TypeVar

T = TypeVar("T")


class Link(Protocol):
    """The shared connection, as the scheduler needs it."""

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> bool: ...

    def close(self) -> None: ...


class BusTimeout(Exception):
    """A unit did not answer within its timeout (the bus itself may be fine)."""


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
        self.stale_answers = 0   # answers that were not their request's (counted by the source)
        # Turns on the line: one at a time, or up to max_in_flight where the link matches
        # answers to requests (Modbus TCP transaction ids).
        self._turn = asyncio.Semaphore(max_in_flight)
        self._connecting = asyncio.Lock()
        self._quiet_from = 0.0  # monotonic time the line went quiet (end of the last answer)

    async def ensure_connected(self, timeout_s: float) -> bool:
        """Connect the shared link if it is not (first user, or after the line dropped)."""
        async with self._connecting:
            if self.link.connected:
                return True
            return await asyncio.wait_for(self.link.connect(), timeout_s)

    async def transact(self, call: Callable[[], Awaitable[T]], timeout_s: float) -> T:
        """`call()` alone on the line after the inter-frame pause; BusTimeout after `timeout_s`
        of waiting for the answer (the wait for the turn is not counted)."""
        async with self._turn:
            pause = self._quiet_from + self.pause_s - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            self.requests += 1
            drain_s = 0.0
            try:
                async with asyncio.timeout(timeout_s):   # cheaper than wait_for: no extra task
                    return await call()
            except TimeoutError:
                self.timeouts += 1
                drain_s = timeout_s if self.drain_after_timeout else 0.0
                raise BusTimeout(f"no answer within {timeout_s:g} s") from None
            finally:
                self._quiet_from = time.monotonic() + drain_s

    def hold_quiet(self, drain_s: float) -> None:
        """Keep the line quiet for `drain_s` more (after an answer that was not its request's,
        the real one may still be on its way)."""
        self._quiet_from = max(self._quiet_from, time.monotonic() + drain_s)


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
            bus.link.close()

    def __len__(self) -> int:
        return len(self._open)


# One registry per process: the gateway runs every device in one event loop. Keys include the
# running loop, so buses made in one loop (a test) are never reused from another.
BUSES = Buses()


def bus_key(key: Hashable) -> Hashable:
    return (id(asyncio.get_running_loop()), key)
