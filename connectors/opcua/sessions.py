"""One OPC UA session shared by the devices of one aggregating server.

A KEPServerEX-style server serves many machines on one endpoint; each device (its own
node_root) would otherwise open its own secure channel and session, and such servers limit
both. Devices with the same endpoint, security and user share one client here; each keeps its
own subscription on it, its own identity reading and its own supervisor.

The link is the one thing they share: when it drops, every member is told (each goes offline
and reconnects as usual); the first to reconnect opens a new session, which the others join.
A member leaving deletes only its subscription; the last one closes the session. Sessions are
per event loop (a client belongs to the loop it was opened in).
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Awaitable, Callable, Hashable

from asyncua import Client

log = logging.getLogger("shangyun.connectors.opcua")

LostCallback = Callable[[Exception], Awaitable[None]]


class SharedSession:
    def __init__(self, key: Hashable, client: Client) -> None:
        self.key = key
        self.client = client
        self.members: list[LostCallback] = []
        self.lost = False

    async def _on_lost(self, exc: Exception) -> None:
        self.lost = True
        for member in list(self.members):
            await member(exc)


class SessionPool:
    def __init__(self) -> None:
        self._open: dict[Hashable, SharedSession] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    async def acquire(self, key: Hashable, open_client: Callable[[LostCallback], Awaitable[Client]],
                      on_lost: LostCallback) -> SharedSession:
        """The live session for `key`, opened with `open_client(lost_callback)` if there is none."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            session = self._open.get(key)
            if session is None or session.lost:
                holder: list[SharedSession] = []

                async def lost(exc: Exception) -> None:
                    if holder:
                        await holder[0]._on_lost(exc)

                client = await open_client(lost)
                session = SharedSession(key, client)
                holder.append(session)
                self._open[key] = session
            session.members.append(on_lost)
            return session

    async def release(self, session: SharedSession, on_lost: LostCallback, timeout_s: float) -> None:
        """Leaves `session`; the last member out disconnects it."""
        if on_lost in session.members:
            session.members.remove(on_lost)
        if session.members:
            return
        if self._open.get(session.key) is session:
            del self._open[session.key]
        try:
            await asyncio.wait_for(session.client.disconnect(), timeout_s)
        except Exception:  # the link may already be dead; closing must not fail
            log.debug("shared session %s: disconnect failed", session.key, exc_info=True)

    def members(self, key: Hashable) -> int:
        session = self._open.get(key)
        return len(session.members) if session is not None and not session.lost else 0


_POOLS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SessionPool]" = weakref.WeakKeyDictionary()


def pool() -> SessionPool:
    """The pool of the running event loop."""
    loop = asyncio.get_running_loop()
    found = _POOLS.get(loop)
    if found is None:
        found = _POOLS[loop] = SessionPool()
    return found
