"""MQTT source: subscribes to one device's telemetry topic (and its retained birth message).

paho's network thread (loop_start) hands every message to the event loop at once (in batches:
connectors/mqtt/handoff.py) and never waits, so it keeps reading the socket
and keeps the keep-alive going however slow the store is. Backpressure is held at the broker
instead: QoS 1 messages are acknowledged only after the pipeline committed their samples
(connectors.base.AckedBatch, manual acks, in receive order: connectors/mqtt/acks.py), and the
broker sends no more than Receive Maximum (MQTT 5, `receive_maximum`) unacknowledged ones; for
MQTT 3.1.1 the broker's own in-flight limit (Mosquitto: `max_inflight_messages`) bounds them.
(Mosquitto 2.0.11 honours Receive Maximum while we acknowledge nothing, but under a live flood
with acks flowing it sends several times more: measured up to 374 for 50.)
A crash before the commit leaves the messages with the broker (persistent session: stable
client id, clean_start false, a long Session Expiry), which redelivers them on the next
connection; the store keeps one row per (device, signal, timestamp), so a redelivered message
is stored once. Acks of messages received on an earlier connection are never sent: their ids
belong to that connection, and the broker redelivers them anyway.

QoS 2 is subscribed as QoS 1: paho answers a QoS 2 PUBLISH with PUBREC before handing it to us,
after which the broker keeps only the message id, so a crash before the commit would lose the
message, and a PUBREL redelivered to a new client is never completed under manual acks (it
would hold one of the broker's in-flight slots for good). QoS 1 plus the store's deduplication
gives the same result, safely. QoS 0 messages have nothing to acknowledge and no broker limit;
while `receive_maximum` of them wait in the hand-off queue further ones are dropped and counted.

Size limits: every payload is checked here against `max_payload_bytes` as it arrives; a larger
one is a payload error, acknowledged, never queued or stored. Only paho's read buffer holds it
for a moment, so the broker's `message_size_limit` is what keeps huge ones off the wire. With
`send_maximum_packet_size` (MQTT 5) the CONNECT also carries Maximum Packet Size and the broker
drops bigger messages itself, unseen by us; it is off by default because Mosquitto 2.0.11 keeps
each such dropped message in its in-flight count for the connection: after `receive_maximum` of
them it sends nothing more while the link stays up (measured; tests/connectors/test_mqtt_limits.py).
"""
from __future__ import annotations

import asyncio
import collections
import functools
import logging
from typing import Any, AsyncIterator, Callable

import paho.mqtt.client as mqtt

from connectors.base import AckedBatch
from connectors.mqtt.acks import InOrderAcks, Pending
from connectors.mqtt import rejects
from connectors.mqtt.client import (Telemetry, arrival_times, close_cleanly, connect_blocking, new_client,
                                    refusal, send_acks)
from connectors.mqtt.config import MqttConnection
from connectors.mqtt.handoff import Handoff
from connectors.mqtt.mapping import BAD_VALUE, DeviceMapping, birth_evidence, parse_birth
from connectors.mqtt.security import tls_evidence
from connectors.reporting import PayloadErrorReporter, ReportsPayloadErrors
from connectors.validation import connection_of
from edge.errors import PayloadError, SourceError
from edge.model import DeviceSpec, IdentityEvidence, Sample, now_ns

log = logging.getLogger("shangyun.connectors.mqtt")

__all__ = ["BAD_VALUE", "MqttSource"]
MAX_BATCH = 500
# A message may now be a batch of readings, so messages alone no longer bound a batch's size.
MAX_BATCH_SAMPLES = 5000
_BYTES_IN_LOG = 64

_Message = tuple[str, bytes, int, Pending | None]  # topic, payload, receive ns, ack entry


class MqttSource(ReportsPayloadErrors):
    def __init__(self, device: DeviceSpec):
        self.device = device
        self.config = connection_of(MqttConnection, device)
        cfg = self.config
        self._mapping = DeviceMapping(device, cfg)
        self._limits = self._mapping.limits
        self._errors = PayloadErrorReporter(log, device.id)
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Message | None] | None = None
        self._acks: InOrderAcks | None = None
        # Bumped by every close(): what paho's thread reports about an older connection is
        # ignored, and that connection's messages are never acknowledged.
        self._generation = 0
        self._lost: str | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._birth: dict[str, Any] | None = None
        self._tls_details: dict[str, str] = {}   # identity evidence of this connection's TLS
        self._identity_given = False     # connect() has returned its identity evidence
        self.on_identity: Callable[[IdentityEvidence], None] | None = None
        self._qos0_waiting = 0
        self._inbox: Handoff[tuple[int, str, bytes, int, int, int]] = Handoff(self._take_messages)
        self._qos0_drop_logged = False
        self.messages = 0
        self.dropped_qos0 = 0

    @property
    def client_id(self) -> str:
        return self.config.client_id or f"shangyun-{self.device.id}"

    @property
    def endpoint(self) -> str:
        return f"{self.config.broker_url}/{self.config.topic}"

    @property
    def in_flight(self) -> int:
        """QoS 1 messages received on this connection and not acknowledged yet."""
        return self._acks.in_flight if self._acks is not None else 0

    @property
    def max_in_flight(self) -> int:
        """The most messages this connection has held unacknowledged at once."""
        return self._acks.max_in_flight if self._acks is not None else 0

    async def connect(self) -> IdentityEvidence:
        await self.close()
        cfg = self.config
        generation = self._generation
        self._loop = asyncio.get_running_loop()
        self._inbox.bind(self._loop)
        self._queue = asyncio.Queue()  # bounded by the broker's in-flight limit (module docstring)
        self._lost, self._birth = None, None
        self._identity_given = False
        self._qos0_waiting = 0
        self._pending = {"connack": self._loop.create_future(), "birth": self._loop.create_future()}
        try:
            client = self._new_client(generation)
        except SourceError as err:
            raise SourceError(f"{self.endpoint}: {err}") from None
        self._acks = InOrderAcks(functools.partial(send_acks, client))
        self._client = client
        self._tls_details = {}
        try:
            await asyncio.to_thread(self._connect_blocking, client)
            client.loop_start()
            await self._wait("connack", "CONNACK")
            self._tls_details = tls_evidence(self.config, client.socket())
            topics = [t for t in (cfg.identity_topic, cfg.topic) if t]
            for topic in topics:
                result, mid = client.subscribe(topic, qos=min(cfg.qos, 1))
                if result != mqtt.MQTT_ERR_SUCCESS:
                    raise SourceError(f"{self.endpoint}: subscribe {topic}: {mqtt.error_string(result)}")
                # The SUBACK callback reaches this loop only after we next await: no race.
                self._pending[f"mid-{mid}"] = self._loop.create_future()
                await self._wait(f"mid-{mid}", f"SUBACK for {topic}")
            return await self._identity()
        except (OSError, mqtt.WebsocketConnectionError, ValueError) as err:
            await self.close()
            raise SourceError(f"{self.endpoint}: cannot connect: {err or type(err).__name__}") from err
        except SourceError:
            await self.close()
            raise

    def _new_client(self, generation: int) -> mqtt.Client:
        client = new_client(self.config, self.client_id, generation)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_telemetry = functools.partial(self._on_telemetry, generation)
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_blocking(self, client: mqtt.Client) -> None:
        connect_blocking(client, self.config)

    async def samples(self) -> AsyncIterator[list[Sample]]:
        queue, acks = self._queue, self._acks
        if queue is None or acks is None or self._client is None:
            raise SourceError(f"{self.endpoint}: samples() before connect()")
        while True:
            # Messages received before the link broke are delivered first (never acknowledged:
            # the broker redelivers them, and the store keeps one copy).
            if self._lost is not None and queue.empty():
                raise SourceError(f"{self.endpoint}: {self._lost}")
            item = await queue.get()
            batch = AckedBatch()
            settled: list[Pending] = []
            count = 0
            while True:
                if item is not None:
                    topic, payload, receive_ns, entry = item
                    batch.extend(self._decode(topic, payload, receive_ns))
                    if entry is not None:
                        settled.append(entry)
                    else:
                        self._qos0_waiting -= 1
                    count += 1
                if queue.empty() or count >= MAX_BATCH or len(batch) >= MAX_BATCH_SAMPLES:
                    break
                item = queue.get_nowait()
            if settled:
                batch.ack = functools.partial(acks.settle, settled)
            if batch or settled:
                yield batch

    async def close(self) -> None:
        client = self._client
        self._client = None
        self._generation += 1
        if self._acks is not None:
            self._acks.close()
        if client is not None:
            await close_cleanly(client, self.config, f"device {self.device.id}")
        for fut in self._pending.values():
            fut.cancel()

    # --- asyncio side -------------------------------------------------------

    def _received(self, topic: str, payload: bytes, qos: int, mid: int, receive_ns: int) -> None:
        queue, acks = self._queue, self._acks
        if queue is None or acks is None:
            return
        entry = acks.received(mid) if qos > 0 else None
        ident = self.config.identity_topic
        if ident and mqtt.topic_matches_sub(ident, topic):
            self._on_birth(topic, payload)
        elif len(payload) > self.config.max_payload_bytes:
            self.messages += 1
            err = PayloadError(
                f"payload of {len(payload)} bytes exceeds max_payload_bytes {self.config.max_payload_bytes}")
            self._errors.report(err, topic=topic, payload=payload[:_BYTES_IN_LOG], reject=rejects.reject(
                payload, topic=topic, device_id=self.device.id, reason=rejects.OVERSIZE, error=err,
                arrived_ns=receive_ns))
        elif entry is None and self._qos0_waiting >= self.config.receive_maximum:
            self._drop_qos0(topic)
        else:
            self.messages += 1
            if entry is None:
                self._qos0_waiting += 1
            queue.put_nowait((topic, payload, receive_ns, entry))
            return
        if entry is not None:
            acks.settle((entry,))  # nothing to store: settled at once, acknowledged in order

    def _drop_qos0(self, topic: str) -> None:
        self.dropped_qos0 += 1
        if not self._qos0_drop_logged:
            self._qos0_drop_logged = True
            log.warning("device %s: QoS 0 messages on %s arrive faster than they are stored; "
                        "dropping them (counted in dropped_qos0; use QoS 1 to lose nothing)",
                        self.device.id, topic)

    def _decode(self, topic: str, payload: bytes, receive_ns: int) -> list[Sample]:
        head = payload[:_BYTES_IN_LOG]

        def field_error(name: str, err: PayloadError) -> None:
            self._errors.report(err, topic=topic, field=name, payload=head)

        try:
            out = self._mapping.samples(payload, receive_ns, field_error)
        except PayloadError as err:
            self._errors.report(err, topic=topic, payload=head, reject=rejects.reject(
                payload, topic=topic, device_id=self.device.id, reason=rejects.INVALID, error=err,
                arrived_ns=receive_ns))
            return []
        if not out:
            # Readable, but not one configured field in it: kept for the operator to see what
            # the device does send (a renamed field, another message type on the topic).
            err = PayloadError(f"no field of signals {sorted(self._mapping.fields)} in the payload")
            self._errors.report(err, topic=topic, payload=head, reject=rejects.reject(
                payload, topic=topic, device_id=self.device.id, reason=rejects.UNMAPPABLE, error=err,
                arrived_ns=receive_ns))
        for problem in self._mapping.unmatched_problems():
            self._errors.report_distinct(problem, topic=topic)
        return out

    def time_sources(self) -> dict[str, int]:
        """Samples stamped with the payload's time ("device") or the arrival time ("gateway")."""
        return dict(self._mapping.time_sources)

    async def _wait(self, key: str, what: str) -> Any:
        try:
            return await asyncio.wait_for(asyncio.shield(self._pending[key]), self.config.timeout_s)
        except asyncio.TimeoutError:
            raise SourceError(f"{self.endpoint}: no {what} within {self.config.timeout_s}s") from None

    async def _identity(self) -> IdentityEvidence:
        birth: dict[str, Any] = {}
        if self.config.identity_topic and self.config.identity_wait_s > 0:
            try:
                birth = await asyncio.wait_for(asyncio.shield(self._pending["birth"]), self.config.identity_wait_s)
            except asyncio.TimeoutError:
                log.info("device %s: no birth message on %s within %ss",
                         self.device.id, self.config.identity_topic, self.config.identity_wait_s)
        self._identity_given = True
        return self._evidence(birth)

    def _evidence(self, birth: dict[str, Any]) -> IdentityEvidence:
        return birth_evidence(birth, self.endpoint, self._tls_details)

    def _resolve(self, key: str, value: Any) -> None:
        fut = self._pending.get(key)
        if fut is not None and not fut.done():
            if isinstance(value, BaseException):
                fut.set_exception(value)
            else:
                fut.set_result(value)

    def _on_birth(self, topic: str, payload: bytes) -> None:
        try:
            doc = parse_birth(payload, self._limits)
        except PayloadError as err:
            self._errors.report(err, topic=topic, payload=payload[:_BYTES_IN_LOG])
            return
        self._birth = doc
        self._resolve("birth", doc)
        if self._identity_given and self.on_identity is not None:
            # A birth after connect() answered (late, or a rebirth): the evidence is reported
            # now rather than never (connectors.base.ReportsIdentity).
            self.on_identity(self._evidence(doc))

    def _mark_lost(self, reason: str) -> None:
        connack = self._pending.get("connack")
        if self.config.tls and connack is not None and not connack.done():
            # TLS 1.3 lets our side of the handshake finish before the broker has judged our
            # certificate, so its refusal arrives only as the link closing, with no reason code.
            reason += (" before CONNACK: over TLS this is the broker refusing the handshake "
                       "(no client certificate where one is required, or one it does not trust)")
        if self._lost is None:
            self._lost = reason
        if self._acks is not None:
            self._acks.close()
        for key in list(self._pending):
            self._resolve(key, SourceError(f"{self.endpoint}: {reason}"))
        if self._queue is not None:
            self._queue.put_nowait(None)  # wake samples()

    # --- paho thread: never blocks, only hands over to the event loop -----------

    def _call(self, generation: int, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._if_current, generation, fn, args)

    def _if_current(self, generation: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        if generation == self._generation:
            fn(*args)

    def _on_connect(self, client: mqtt.Client, userdata: int, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._call(userdata, self._resolve, "connack",
                       SourceError(f"{self.endpoint}: {refusal(self.config, reason)}"))
        else:
            self._call(userdata, self._resolve, "connack", True)

    def _on_subscribe(self, client: mqtt.Client, userdata: int, mid: int, reasons: Any, props: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        result: Any = SourceError(f"{self.endpoint}: subscription refused: {refused}") if refused else True
        self._call(userdata, self._resolve, f"mid-{mid}", result)

    def _on_disconnect(self, client: mqtt.Client, userdata: int, flags: Any, reason: Any, props: Any) -> None:
        # After close() the generation has moved on, so our own DISCONNECT is not a lost link.
        self._call(userdata, self._mark_lost, f"disconnected ({reason})")

    def _on_message(self, client: mqtt.Client, userdata: int, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put((userdata, msg.topic, msg.payload, msg.qos, msg.mid, now_ns()))

    def _on_telemetry(self, generation: int, messages: list[Telemetry]) -> None:
        self._inbox.put_many([(generation, topic, payload, qos, mid, receive_ns) for (topic, payload, qos, mid), receive_ns
                              in zip(messages, arrival_times(len(messages)))])

    def _take_messages(self, inbox: collections.deque[tuple[int, str, bytes, int, int, int]]) -> None:
        while inbox:
            generation, *message = inbox.popleft()
            if generation == self._generation:
                self._received(*message)

