"""MQTT source: subscribes to one device's telemetry topic (and its retained birth message).

The only module importing paho-mqtt. paho's network thread (loop_start) hands every message to
the event loop at once (call_soon_threadsafe) and never waits, so it keeps reading the socket
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
import functools
import logging
from typing import Any, AsyncIterator, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.base import AckedBatch
from connectors.mqtt.acks import InOrderAcks, Pending
from connectors.mqtt.config import FieldPath, MqttConnection, split_path
from connectors.mqtt import rejects
from connectors.mqtt.payload import Decoded, Limits, decode_payload, parse_json
from connectors.mqtt.security import client_certificate_details, credentials, peer_certificate_sha256, tls_context
from connectors.reporting import PayloadErrorReporter, ReportsPayloadErrors
from connectors.validation import address_of, connection_of
from edge.errors import PayloadError, SourceError
from edge.model import DeviceSpec, IdentityEvidence, Quality, Sample, now_ns

log = logging.getLogger("shangyun.connectors.mqtt")

BAD_VALUE = ""  # value of a BAD sample: there is no reading, and "" cannot pass for one
MAX_BATCH = 500
# A message may now be a batch of readings, so messages alone no longer bound a batch's size.
MAX_BATCH_SAMPLES = 5000
_BYTES_IN_LOG = 64
# Maximum Packet Size counts the whole PUBLISH: fixed header, topic, packet id, properties.
# This much room over max_payload_bytes covers any sane topic; the exact payload check is ours.
_PACKET_HEADROOM = 4096
_MAX_PACKET = 268_435_455  # the largest packet MQTT can encode

_Message = tuple[str, bytes, int, Pending | None]  # topic, payload, receive ns, ack entry


class MqttSource(ReportsPayloadErrors):
    def __init__(self, device: DeviceSpec):
        self.device = device
        self.config = connection_of(MqttConnection, device)
        cfg = self.config
        self._fields = {s.name: address_of(FieldPath, device, s).parts for s in device.signals}
        self._signals = {s.name: s for s in device.signals}
        self._ts_path = split_path(cfg.timestamp_field) if cfg.timestamp_field else None
        self._limits = Limits(max_depth=cfg.max_json_depth, max_string_chars=cfg.max_string_chars,
                              max_batch_readings=cfg.max_batch_readings)
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
        self._qos0_drop_logged = False
        self.messages = 0
        self._decoded = 0
        self._unmatched: set[str] | None = set(self._fields)   # None once checked
        self.dropped_qos0 = 0

    @property
    def client_id(self) -> str:
        return self.config.client_id or f"shangyun-{self.device.id}"

    @property
    def endpoint(self) -> str:
        scheme = "mqtts" if self.config.tls else "mqtt"
        return f"{scheme}://{self.config.host}:{self.config.port}/{self.config.topic}"

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
        self._queue = asyncio.Queue()  # bounded by the broker's in-flight limit (module docstring)
        self._lost, self._birth = None, None
        self._identity_given = False
        self._qos0_waiting = 0
        self._pending = {"connack": self._loop.create_future(), "birth": self._loop.create_future()}
        try:
            client = self._new_client(generation)
        except SourceError as err:
            raise SourceError(f"{self.endpoint}: {err}") from None
        self._acks = InOrderAcks(functools.partial(_send_ack, client))
        self._client = client
        self._tls_details = {}
        try:
            await asyncio.to_thread(self._connect_blocking, client)
            client.loop_start()
            await self._wait("connack", "CONNACK")
            self._tls_details = self._tls_evidence(client)
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
        cfg = self.config
        v5 = cfg.protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, userdata=generation,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else cfg.clean_session,
            # The supervisor reconnects (with backoff, offline marking, a new generation).
            reconnect_on_failure=False, manual_ack=True)
        client.connect_timeout = cfg.timeout_s
        creds = credentials(cfg)
        if creds.username is not None:
            client.username_pw_set(creds.username, creds.password)
        if cfg.tls:
            client.tls_set_context(tls_context(cfg))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_blocking(self, client: mqtt.Client) -> None:
        cfg = self.config
        if cfg.protocol != "5":
            client.connect(cfg.host, cfg.port, cfg.keepalive_s)
            return
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if cfg.clean_session else cfg.session_expiry_s
        props.ReceiveMaximum = cfg.receive_maximum
        if cfg.send_maximum_packet_size:
            props.MaximumPacketSize = min(cfg.max_payload_bytes + _PACKET_HEADROOM, _MAX_PACKET)
        client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=cfg.clean_session,
                       properties=props)

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
            try:
                client.disconnect()
            except Exception:
                log.debug("device %s: disconnect failed", self.device.id, exc_info=True)
            await asyncio.to_thread(client.loop_stop)
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
        try:
            readings = decode_payload(payload, self._fields, ts_path=self._ts_path, receive_ns=receive_ns,
                                      limits=self._limits, fmt=self.config.payload_format)
        except PayloadError as err:
            self._errors.report(err, topic=topic, payload=payload[:_BYTES_IN_LOG], reject=rejects.reject(
                payload, topic=topic, device_id=self.device.id, reason=rejects.INVALID, error=err,
                arrived_ns=receive_ns))
            return []
        if readings and not any(d.values or d.errors for d in readings):
            # Readable, but not one configured field in it: kept for the operator to see what
            # the device does send (a renamed field, another message type on the topic).
            err = PayloadError(f"no field of signals {sorted(self._fields)} in the payload")
            self._errors.report(err, topic=topic, payload=payload[:_BYTES_IN_LOG], reject=rejects.reject(
                payload, topic=topic, device_id=self.device.id, reason=rejects.UNMAPPABLE, error=err,
                arrived_ns=receive_ns))
        out: list[Sample] = []
        for decoded in readings:
            self._note_matches(decoded, topic)
            out.extend(self._samples_of(decoded, topic, payload))
        return out

    def _samples_of(self, decoded: Decoded, topic: str, payload: bytes) -> list[Sample]:
        out = []
        for name, err in decoded.errors.items():
            self._errors.report(err, topic=topic, field=name, payload=payload[:_BYTES_IN_LOG])
            if name in self._signals:
                out.append(Sample(self.device.id, name, decoded.ts_ns, BAD_VALUE, Quality.BAD))
        for name, raw in decoded.values.items():
            value, quality, problem = self._signals[name].check(raw)
            if problem is not None:   # wrong type or range for the role: counted, not GOOD
                self._errors.report(problem, topic=topic, field=name, payload=payload[:_BYTES_IN_LOG])
            out.append(Sample(self.device.id, name, decoded.ts_ns, value, quality))
        return out

    def _note_matches(self, decoded: Any, topic: str) -> None:
        """A signal whose path matched nothing after `unmatched_warn_after` payloads is almost
        always a typo in the config (or a firmware that renamed the field): say so once, per
        signal, instead of leaving the engineer to wonder why the tile stays empty."""
        if self._unmatched is None:
            return
        self._unmatched.difference_update(decoded.values)
        self._unmatched.difference_update(decoded.errors)
        self._decoded += 1
        if self._decoded < self.config.unmatched_warn_after:
            return
        for name in sorted(self._unmatched):
            self._errors.report_distinct(PayloadError(
                f"signal {name}: path {'.'.join(self._fields[name])!r} matched nothing in "
                f"{self._decoded} payloads"), topic=topic)
        self._unmatched = None      # checked once per source

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
        known = ("client_id", "serial_number")
        return IdentityEvidence(
            protocol="mqtt", endpoint=self.endpoint,
            client_id=str(birth.get("client_id", "")), serial_number=str(birth.get("serial_number", "")),
            details={**{k: str(v) for k, v in birth.items() if k not in known}, **self._tls_details})

    def _tls_evidence(self, client: mqtt.Client) -> dict[str, str]:
        if not self.config.tls:
            return {}
        details = {"broker_certificate_sha256": peer_certificate_sha256(client.socket())}
        if self.config.cert_file:
            details.update(client_certificate_details(self.config.cert_file))
        return details

    def _resolve(self, key: str, value: Any) -> None:
        fut = self._pending.get(key)
        if fut is not None and not fut.done():
            if isinstance(value, BaseException):
                fut.set_exception(value)
            else:
                fut.set_result(value)

    def _on_birth(self, topic: str, payload: bytes) -> None:
        try:
            doc = dict(parse_json(payload, self._limits))
            too_long = [k for k, v in doc.items() if len(str(v)) > self._limits.max_string_chars]
            if too_long:
                raise PayloadError(f"birth message fields {too_long} are longer than max_string_chars "
                                   f"{self._limits.max_string_chars}")
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
            hint = ""
            if self.config.protocol == "5" and "protocol" in str(reason).lower():
                hint = " (a broker without MQTT 5 needs `protocol: 3.1.1`)"
            self._call(userdata, self._resolve, "connack",
                       SourceError(f"{self.endpoint}: broker refused: {reason}{hint}"))
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
        self._call(userdata, self._received, msg.topic, msg.payload, msg.qos, msg.mid, now_ns())


def _send_ack(client: mqtt.Client, mid: int) -> None:
    # Thread-safe with loop_start(): paho only queues the PUBACK and wakes its network thread.
    client.ack(mid, 1)
