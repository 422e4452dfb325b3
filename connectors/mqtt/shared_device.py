"""One device's view of a shared broker connection (connectors/mqtt/shared.py): the Source its
supervisor runs. The connection feeds it (samples with their acknowledgement holds, births,
deaths, link losses); it turns them into the Source interface, and decides when the device is
online: the link is up and the device has published within `stale_after_s` (shared.py's
docstring)."""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, AsyncIterator, Callable

from connectors.base import AckedBatch
from connectors.mqtt.acks import Pending
from connectors.mqtt.config import MqttConnection
from connectors.mqtt.routing import Route
from connectors.mqtt.topics import TopicTemplate
from connectors.reporting import PayloadErrorReporter, ReportsPayloadErrors
from edge.errors import SourceError
from edge.model import DeviceSpec, IdentityEvidence, Sample

if TYPE_CHECKING:
    from connectors.mqtt.shared import SharedConnection

log = logging.getLogger("shangyun.connectors.mqtt")

# Samples a device's buffer may hold before QoS 0 messages are dropped (counted); QoS 1 is
# bounded by the broker's Receive Maximum instead.
MAX_QOS0_SAMPLES = 100_000
_BYTES_IN_LOG = 64


class SharedDeviceSource(ReportsPayloadErrors):
    """One device's view of a shared connection: the Source its supervisor runs."""

    def __init__(self, device: DeviceSpec, cfg: MqttConnection, conn: "SharedConnection", route: Route):
        self.device = device
        self.config = cfg
        self.connection = conn
        self._route = route
        self._errors = PayloadErrorReporter(log, device.id)
        self.on_identity: Callable[[IdentityEvidence], None] | None = None
        topic = TopicTemplate.parse(cfg.topic).fill({"device": device.id})
        self.endpoint = f"{conn.endpoint}/{topic}"
        self._samples: list[Sample] = []
        self._entries: list[Pending] = []
        self._waiter: asyncio.Future[None] | None = None
        self._streaming = False
        self._lost: str | None = None
        self._dead: str | None = None
        self._down_reported = False
        self._birth: IdentityEvidence | None = None
        self._seen_mono: float | None = None
        self.messages = 0
        self.dropped_qos0 = 0

    # --- fed by the connection (event loop thread) ---------------------------------

    def offer(self, samples: list[Sample], entry: Pending | None, mono: float) -> None:
        self._seen_mono = mono
        self._dead = None
        self.messages += 1
        if entry is None:
            if len(self._samples) >= MAX_QOS0_SAMPLES:
                self.dropped_qos0 += 1      # QoS 0: nothing holds the broker back but this
                return
        elif not self._entries or self._entries[-1] is not entry:
            entry.waiting += 1
            self._entries.append(entry)
        self._samples.extend(samples)

    def on_birth(self, identity: IdentityEvidence, mono: float) -> None:
        self._seen_mono = mono
        self._dead = None
        self._birth = identity
        if self._streaming and self.on_identity is not None:
            self.on_identity(identity)

    def on_death(self, reason: str) -> None:
        self._dead = reason

    def seen(self, mono: float) -> None:
        self._seen_mono = mono

    def report(self, error: Exception, topic: str, payload: bytes) -> None:
        self._errors.report(error, topic=topic, payload=payload[:_BYTES_IN_LOG])

    def link_lost(self, reason: str) -> None:
        self._entries.clear()   # their ids belong to the lost connection: never acknowledged
        self._lost = reason
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, timeout_s: float | None) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            if timeout_s is None:
                await self._waiter
            else:
                async with asyncio.timeout(timeout_s):
                    await self._waiter
        except TimeoutError:
            pass
        finally:
            self._waiter = None

    # --- connectors.base.Source ----------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self.connection.acks.in_flight if self.connection.acks is not None else 0

    def time_sources(self) -> dict[str, int]:
        """Samples stamped with the payload's time ("device") or the arrival time ("gateway")."""
        get = getattr(self._route, "time_sources", None)
        return dict(get(self.device.id)) if get is not None else {}

    def _fresh(self) -> bool:
        stale = self.config.stale_after_s
        if self._dead is not None:
            return False
        if stale is None:
            return True
        return self._seen_mono is not None and time.monotonic() - self._seen_mono <= stale

    async def connect(self) -> IdentityEvidence:
        conn = self.connection
        conn.start()
        self._streaming = False
        if not conn.up:
            if not self._down_reported:
                try:
                    async with asyncio.timeout(2 * self.config.timeout_s + 1):
                        await conn.wait_up()
                except TimeoutError:
                    self._down_reported = True      # offline once; later attempts wait quietly
                    raise SourceError(f"{self.endpoint}: {conn.last_error or 'not connected yet'}") from None
            else:
                await conn.wait_up()
        self._down_reported = False
        self._lost = None
        while not self._fresh():
            # Online means the device speaks: wait (without a timeout) for its next message.
            await self._sleep(None)
            if self._lost is not None:
                self._down_reported = True
                raise SourceError(f"{self.endpoint}: {self._lost}")
        if self.config.identity_topic and self._birth is None and self.config.identity_wait_s > 0:
            await self._sleep(self.config.identity_wait_s)
        self._lost = None
        self._streaming = True
        if self._birth is not None:
            return self._birth
        return IdentityEvidence(protocol="mqtt", endpoint=self.endpoint, details=dict(conn.tls_details))

    async def samples(self) -> AsyncIterator[list[Sample]]:
        conn = self.connection
        stale = self.config.stale_after_s
        while True:
            if self._samples or self._entries:
                batch = AckedBatch(self._samples)
                entries, self._samples, self._entries = self._entries, [], []
                if entries and conn.acks is not None:
                    batch.ack = functools.partial(conn.acks.settle, entries)
                yield batch
                continue
            if self._lost is not None:
                raise SourceError(f"{self.endpoint}: {self._lost}")
            if self._dead is not None:
                raise SourceError(f"{self.endpoint}: {self._dead}")
            if stale is None:
                await self._sleep(None)
                continue
            left = stale - (time.monotonic() - (self._seen_mono or 0.0))
            if left <= 0:
                raise SourceError(f"{self.endpoint}: no message for {stale:g} s (stale_after_s)")
            await self._sleep(left)

    async def close(self) -> None:
        self._streaming = False
