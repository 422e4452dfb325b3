"""MQTT source: subscribes to one device's telemetry topic (and its retained birth message).

The only module importing paho-mqtt. paho's network loop runs in its own thread; messages cross
to asyncio through a bounded queue. When the queue is full the paho thread waits, so it stops
reading the socket and stops acknowledging QoS 1 messages: the broker holds back instead of us
dropping anything. (A wait longer than 1.5 x keepalive makes the broker drop the link; the
supervisor then reconnects, and with clean_session false the broker keeps what was queued.)
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any, AsyncIterator

import paho.mqtt.client as mqtt

from connectors.mqtt.config import FieldPath, MqttConnection, split_path
from connectors.mqtt.payload import decode_message, parse_json
from connectors.reporting import PayloadErrorReporter, ReportsPayloadErrors
from connectors.validation import address_of, connection_of
from edge.errors import PayloadError, SourceError
from edge.model import DeviceSpec, IdentityEvidence, Quality, Sample, now_ns

log = logging.getLogger("shangyun.connectors.mqtt")

BAD_VALUE = ""  # value of a BAD sample: there is no reading, and "" cannot pass for one
MAX_BATCH = 500
_LOOP_TIMEOUT_S = 0.2     # how quickly the network thread notices close()
_PUT_RECHECK_S = 0.5      # how often a blocked paho thread checks whether we are closing
_BYTES_IN_LOG = 64

_Message = tuple[str, bytes, int]  # topic, payload, receive time ns


class MqttSource(ReportsPayloadErrors):
    def __init__(self, device: DeviceSpec):
        self.device = device
        self.config = connection_of(MqttConnection, device)
        self._fields = {s.name: address_of(FieldPath, device, s).parts for s in device.signals}
        self._signals = {s.name: s for s in device.signals}
        self._ts_path = split_path(self.config.timestamp_field) if self.config.timestamp_field else None
        self._errors = PayloadErrorReporter(log, device.id)
        self._client: mqtt.Client | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Message | None] | None = None
        self._lost: str | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._birth: dict[str, Any] | None = None
        self.messages = 0

    @property
    def client_id(self) -> str:
        return self.config.client_id or f"shangyun-{self.device.id}"

    @property
    def endpoint(self) -> str:
        return f"mqtt://{self.config.host}:{self.config.port}/{self.config.topic}"

    async def connect(self) -> IdentityEvidence:
        await self.close()
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=cfg.queue_size)
        self._stopping = threading.Event()
        self._lost, self._birth = None, None
        self._pending = {"connack": self._loop.create_future(), "birth": self._loop.create_future()}
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=cfg.clean_session)
        client.connect_timeout = cfg.timeout_s
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        try:
            await asyncio.to_thread(client.connect, cfg.host, cfg.port, cfg.keepalive_s)
            self._thread = threading.Thread(target=self._network_loop, args=(client, self._stopping),
                                            name=f"mqtt-{self.device.id}", daemon=True)
            self._thread.start()
            await self._wait("connack", "CONNACK")
            topics = [t for t in (cfg.identity_topic, cfg.topic) if t]
            for topic in topics:
                result, mid = client.subscribe(topic, qos=cfg.qos)
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

    async def samples(self) -> AsyncIterator[list[Sample]]:
        queue = self._queue
        if queue is None or self._client is None:
            raise SourceError(f"{self.endpoint}: samples() before connect()")
        while True:
            # Messages received before the link broke are delivered first.
            if self._lost is not None and queue.empty():
                raise SourceError(f"{self.endpoint}: {self._lost}")
            item = await queue.get()
            batch: list[Sample] = []
            count = 0
            while True:
                if item is not None:
                    batch.extend(self._decode(*item))
                    count += 1
                if queue.empty() or count >= MAX_BATCH:
                    break
                item = queue.get_nowait()
            if batch:
                yield batch

    async def close(self) -> None:
        client, thread = self._client, self._thread
        self._client, self._thread = None, None
        self._stopping.set()
        if client is not None:
            try:
                client.disconnect()
            except Exception:
                log.debug("device %s: disconnect failed", self.device.id, exc_info=True)
        if thread is not None:
            await asyncio.to_thread(thread.join, _PUT_RECHECK_S * 4)
        for fut in self._pending.values():
            fut.cancel()

    # --- asyncio side -------------------------------------------------------

    def _decode(self, topic: str, payload: bytes, receive_ns: int) -> list[Sample]:
        self.messages += 1
        try:
            decoded = decode_message(payload, self._fields, ts_path=self._ts_path, receive_ns=receive_ns)
        except PayloadError as err:
            self._errors.report(err, topic=topic, payload=payload[:_BYTES_IN_LOG])
            return []
        out = []
        for name, err in decoded.errors.items():
            self._errors.report(err, topic=topic, field=name, payload=payload[:_BYTES_IN_LOG])
            if name in self._signals:
                out.append(Sample(self.device.id, name, decoded.ts_ns, BAD_VALUE, Quality.BAD))
        for name, raw in decoded.values.items():
            value, quality = self._signals[name].convert(raw)
            out.append(Sample(self.device.id, name, decoded.ts_ns, value, quality))
        return out

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
        known = ("client_id", "serial_number")
        return IdentityEvidence(
            protocol="mqtt", endpoint=self.endpoint,
            client_id=str(birth.get("client_id", "")), serial_number=str(birth.get("serial_number", "")),
            details={k: str(v) for k, v in birth.items() if k not in known})

    def _resolve(self, key: str, value: Any) -> None:
        fut = self._pending.get(key)
        if fut is not None and not fut.done():
            if isinstance(value, BaseException):
                fut.set_exception(value)
            else:
                fut.set_result(value)

    def _on_birth(self, topic: str, payload: bytes) -> None:
        try:
            doc = dict(parse_json(payload))
        except PayloadError as err:
            self._errors.report(err, topic=topic, payload=payload[:_BYTES_IN_LOG])
            return
        self._birth = doc
        self._resolve("birth", doc)

    def _mark_lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        for key in list(self._pending):
            self._resolve(key, SourceError(f"{self.endpoint}: {reason}"))
        if self._queue is not None and not self._queue.full():
            self._queue.put_nowait(None)  # wake samples(); a full queue wakes it anyway

    # --- paho thread --------------------------------------------------------

    def _network_loop(self, client: mqtt.Client, stopping: threading.Event) -> None:
        while not stopping.is_set():
            rc = client.loop(timeout=_LOOP_TIMEOUT_S)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                if not stopping.is_set():
                    self._call(self._mark_lost, f"connection lost ({mqtt.error_string(rc)})")
                return

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._call(self._resolve, "connack", SourceError(f"{self.endpoint}: broker refused: {reason}"))
        else:
            self._call(self._resolve, "connack", True)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        result: Any = SourceError(f"{self.endpoint}: subscription refused: {refused}") if refused else True
        self._call(self._resolve, f"mid-{mid}", result)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not self._stopping.is_set():
            self._call(self._mark_lost, f"disconnected by broker ({reason})")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        received = now_ns()
        ident = self.config.identity_topic
        if ident and mqtt.topic_matches_sub(ident, msg.topic):
            self._call(self._on_birth, msg.topic, bytes(msg.payload))
            return
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            return
        # Blocking here is the backpressure: paho acknowledges a QoS 1 message only after
        # this callback returns.
        fut = asyncio.run_coroutine_threadsafe(queue.put((msg.topic, bytes(msg.payload), received)), loop)
        while True:
            try:
                fut.result(timeout=_PUT_RECHECK_S)
                return
            except concurrent.futures.TimeoutError:
                if self._stopping.is_set():
                    fut.cancel()
                    return
            except (concurrent.futures.CancelledError, RuntimeError):
                return
