"""One broker connection shared by many devices: one paho client, one session, one subscription set.

    connections = SharedConnections(on_event=..., on_reject=...)   # one per gateway
    source = connections.source(device)      # a Source for DeviceSupervisor, per device
    ...
    await connections.close()                # after the supervisors stopped

A device rides on a shared connection when it names a broker (`connection: {broker: plant}`,
the gateway config's `mqtt_brokers:`), has a topic template (`factory/{line}/{device}/telemetry`)
or speaks Sparkplug B. Devices naming the same broker share its connection; devices with their own
host settings share one when those settings are equal. What the connection receives goes to routes
(connectors/mqtt/routing.py), which turn it into samples per device.

Speed: paho's network thread only appends `(topic, payload, qos, mid, receive time)` to a deque
and wakes the event loop when the deque was empty (call_soon_threadsafe once per wake-up, not
per message); the loop drains the deque, routes every message, and wakes each device's stream
once per drain with everything that arrived for it.

Acknowledgements: a QoS 1 message is acknowledged (in receive order, InOrderAcks) once every
device batch holding its samples was committed, or at once when it produced none. Messages of a
device whose stream is not running (between a stale-offline and the reconnect) wait in its buffer
and hold their acknowledgement; the broker's Receive Maximum bounds how many can wait.

Online per device: the connection is up and the device has published (anything: telemetry, a
birth, even a rejected payload) within its `stale_after_s` (default 120 s; null: whenever the
connection is up). A device silent for longer goes offline (its stream ends with a SourceError,
so the supervisor emits BAD samples and records it); `connect()` then waits, without a timeout,
for its next message. A Sparkplug death certificate does the same at once.

Reconnecting is the connection's own loop (with backoff), not the devices': when the link drops,
every device goes offline once (a SourceError from its stream, or from its first connect), then
waits in `connect()` for the link and its next message, so 50 supervisors do not knock 50 times.
Messages received before the link dropped are still stored but never acknowledged: their ids
belong to that connection; the broker redelivers them, and the store keeps one row per
(device, signal, timestamp).
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import hashlib
import json
import logging
import time
from typing import Any, Callable, Hashable, Mapping

import paho.mqtt.client as mqtt

from connectors.backoff import Backoff
from connectors.mqtt.acks import InOrderAcks, Pending
from connectors.mqtt.client import (Telemetry, arrival_times, close_cleanly, connect_blocking, new_client,
                                    refusal, send_acks)
from connectors.mqtt.config import DEVICE_KEYS, MqttConnection
from connectors.mqtt.handoff import Handoff
from connectors.mqtt.routing import OVERSIZE, REJECT_HEAD_BYTES, Reject, Route, route_kind, route_kind_of
from connectors.mqtt.security import tls_evidence
from connectors.mqtt.shared_device import SharedDeviceSource
from connectors.mqtt.topics import topic_matches
from connectors.validation import connection_of
from edge.errors import ConfigError, PayloadError, SourceError
from edge.model import DeviceSpec, IdentityEvidence, Sample, now_ns

log = logging.getLogger("shangyun.connectors.mqtt")

UNCONFIGURED_DEVICE = "unconfigured_device"
ROUTE_ERROR = "route_error"     # a route raised: a bug, counted and kept like a rejected payload
DRAIN_MAX = 2000            # messages per drain before other tasks get a turn
RECONNECT_MAX_S = 30.0
_ROUTE_CACHE_MAX = 100_000

EventFn = Callable[[str, dict[str, Any]], Any]
RejectFn = Callable[[Reject], Any]


def connection_key(cfg: MqttConnection) -> Hashable:
    """Devices with equal keys share a connection."""
    if cfg.broker is not None:
        return ("broker", cfg.broker)
    settings = {k: v for k, v in cfg.model_dump().items() if k not in DEVICE_KEYS}
    return ("settings", json.dumps(settings, sort_keys=True, default=str))


class SharedConnections:
    """The shared broker connections of one gateway.

    `on_event(kind, data)` receives what concerns no configured device (`unconfigured_device`,
    once per id); `on_reject(reject)` every message refused as a whole (for the dead letters)."""

    def __init__(self, *, on_event: EventFn | None = None, on_reject: RejectFn | None = None):
        self.on_event = on_event
        self.on_reject = on_reject
        self._connections: dict[Hashable, SharedConnection] = {}

    @staticmethod
    def handles(device: DeviceSpec) -> bool:
        return device.protocol == "mqtt" and connection_of(MqttConnection, device).shared

    def source(self, device: DeviceSpec) -> "SharedDeviceSource":
        cfg = connection_of(MqttConnection, device)
        key = connection_key(cfg)
        conn = self._connections.get(key)
        if conn is None:
            conn = self._connections[key] = SharedConnection(cfg, self)
        try:
            return conn.add_device(device, cfg)
        except ValueError as err:   # two devices on one static topic, a route kind missing...
            raise ConfigError(f"device {device.id}: {err}") from None

    @property
    def connections(self) -> list["SharedConnection"]:
        return list(self._connections.values())

    def unconfigured(self) -> list[dict[str, Any]]:
        """Every device id seen on a template and configured nowhere, with its topic, count and
        suggested YAML."""
        return [dict(rec) for c in self._connections.values() for rec in c.unconfigured_seen.values()]

    def stats(self) -> list[dict[str, Any]]:
        return [c.stats() for c in self._connections.values()]

    async def close(self) -> None:
        for conn in self._connections.values():
            await conn.close()


class SharedConnection:
    def __init__(self, cfg: MqttConnection, owner: SharedConnections):
        self.config = cfg
        self._owner = owner
        self.name = cfg.broker or f"{cfg.host}:{cfg.port}"
        self.views: dict[str, SharedDeviceSource] = {}
        self._routes: dict[Hashable, Route] = {}
        self._route_cache: dict[str, list[Route]] = {}
        self.generation = 0
        self._client: mqtt.Client | None = None
        self.acks: InOrderAcks | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._closing = False
        self.last_error: str | None = None
        self.tls_details: dict[str, str] = {}
        self._inbox: Handoff[tuple[str, bytes, int, int, int, int]] = Handoff(self._route_messages)
        self._touched: set[SharedDeviceSource] = set()
        self._entry: Pending | None = None    # the message being routed, and when its drain began
        self._mono = 0.0
        self.messages = 0
        self.drains = 0
        self.rejects: collections.Counter[str] = collections.Counter()
        self.unconfigured_seen: dict[str, dict[str, Any]] = {}

    # --- set-up -------------------------------------------------------------

    def add_device(self, device: DeviceSpec, cfg: MqttConnection) -> "SharedDeviceSource":
        if device.id in self.views:
            raise ValueError(f"device {device.id!r} is already on the shared connection {self.name}")
        kind = route_kind(route_kind_of(cfg))
        key = (route_kind_of(cfg), kind.key(cfg))
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = kind.make(cfg)
        route.add_device(device)
        self._route_cache.clear()
        view = SharedDeviceSource(device, cfg, self, route)
        self.views[device.id] = view
        return view

    @property
    def client_id(self) -> str:
        if self.config.client_id:
            return self.config.client_id
        if self.config.broker:
            return f"shangyun-{self.config.broker}"
        # Stable while the same devices share it; `client_id` (or a named broker) keeps the
        # persistent session across config edits.
        digest = hashlib.sha1(" ".join(sorted(self.filters)).encode()).hexdigest()[:8]
        return f"shangyun-{min(self.views)}-{digest}"

    @property
    def filters(self) -> list[str]:
        return sorted({f for r in self._routes.values() for f in r.filters})

    @property
    def endpoint(self) -> str:
        return self.config.broker_url

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def start(self) -> None:
        if self._task is None and not self._closing:
            self._loop = asyncio.get_running_loop()
            self._inbox.bind(self._loop)
            self._task = asyncio.create_task(self._run(), name=f"mqtt-shared:{self.name}")

    async def wait_up(self) -> None:
        await self._up.wait()

    # --- the link's life ----------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(initial_s=min(1.0, self.config.timeout_s), max_s=RECONNECT_MAX_S)
        while not self._closing:
            try:
                await self._connect_once()
            except (SourceError, Exception) as err:  # noqa: BLE001 - anything else is a bug: logged, retried
                if not isinstance(err, SourceError):
                    log.error("shared connection %s: unexpected error connecting", self.name, exc_info=err)
                self._set_lost(str(err) or type(err).__name__)
                await self._teardown()
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            log.info("shared connection %s: connected (%d devices, filters %s)",
                     self.name, len(self.views), self.filters)
            await self._lost.wait()
            log.warning("shared connection %s: %s (reconnecting)", self.name, self.last_error)
            await self._teardown()
            await asyncio.sleep(backoff.next_delay())

    async def _connect_once(self) -> None:
        cfg, loop = self.config, asyncio.get_running_loop()
        self.generation += 1
        gen = self.generation
        self._lost.clear()
        self._pending = {"connack": loop.create_future()}
        try:
            client = new_client(cfg, self.client_id, gen)
        except SourceError as err:
            raise SourceError(f"{self.endpoint}: {err}") from None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_telemetry = functools.partial(self._on_telemetry, gen)
        client.on_subscribe = self._on_subscribe
        self._client = client
        self.acks = InOrderAcks(functools.partial(send_acks, client))
        try:
            await asyncio.to_thread(connect_blocking, client, cfg)
            client.loop_start()
            await self._wait("connack", "CONNACK")
            self.tls_details = tls_evidence(self.config, client.socket())
            result, mid = client.subscribe([(f, min(cfg.qos, 1)) for f in self.filters])
            if result != mqtt.MQTT_ERR_SUCCESS:
                raise SourceError(f"{self.endpoint}: subscribe: {mqtt.error_string(result)}")
            self._pending[f"mid-{mid}"] = loop.create_future()
            await self._wait(f"mid-{mid}", "SUBACK")
        except (OSError, mqtt.WebsocketConnectionError, ValueError) as err:
            raise SourceError(f"{self.endpoint}: cannot connect: {err or type(err).__name__}") from err
        self.last_error = None
        self._up.set()
        for route in self._routes.values():
            route.connected(self)

    async def _wait(self, key: str, what: str) -> Any:
        try:
            return await asyncio.wait_for(asyncio.shield(self._pending[key]), self.config.timeout_s)
        except asyncio.TimeoutError:
            raise SourceError(f"{self.endpoint}: no {what} within {self.config.timeout_s}s") from None

    def _set_lost(self, reason: str) -> None:
        self.last_error = reason
        self._up.clear()
        if self.acks is not None:
            self.acks.close()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(SourceError(f"{self.endpoint}: {reason}"))
                fut.exception()     # retrieved: nobody may be waiting any more
        for view in self.views.values():
            view.link_lost(reason)
        self._lost.set()

    async def _teardown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_cleanly(client, self.config, f"shared connection {self.name}")

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self.generation += 1     # what paho still reports is about a connection we closed
        self._set_lost("shared connection closed")
        await self._teardown()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """For routes (routing.Link): a message on this connection, e.g. a Sparkplug rebirth request."""
        if self._client is None or not self.up:
            raise SourceError(f"{self.endpoint}: not connected")
        self._client.publish(topic, payload, qos=qos, retain=retain)

    # --- paho's thread: never blocks, only hands over ------------------------

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: mqtt.Client, gen: int, flags: Any, reason: Any, props: Any) -> None:
        result: Any = SourceError(f"{self.endpoint}: {refusal(self.config, reason)}") if reason.is_failure else True
        self._call(self._resolve, gen, "connack", result)

    def _on_subscribe(self, client: mqtt.Client, gen: int, mid: int, reasons: Any, props: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        result: Any = SourceError(f"{self.endpoint}: subscription refused: {refused}") if refused else True
        self._call(self._resolve, gen, f"mid-{mid}", result)

    def _on_disconnect(self, client: mqtt.Client, gen: int, flags: Any, reason: Any, props: Any) -> None:
        self._call(self._disconnected, gen, f"disconnected ({reason})")

    def _on_message(self, client: mqtt.Client, gen: int, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put((msg.topic, msg.payload, msg.qos, msg.mid, now_ns(), gen))

    def _on_telemetry(self, gen: int, messages: list[Telemetry]) -> None:
        self._inbox.put_many([(topic, payload, qos, mid, receive_ns, gen)
                              for (topic, payload, qos, mid), receive_ns in zip(messages, arrival_times(len(messages)))])

    # --- the event loop's side ------------------------------------------------

    def _resolve(self, gen: int, key: str, value: Any) -> None:
        fut = self._pending.get(key)
        if gen == self.generation and fut is not None and not fut.done():
            if isinstance(value, BaseException):
                fut.set_exception(value)
            else:
                fut.set_result(value)

    def _disconnected(self, gen: int, reason: str) -> None:
        if gen == self.generation and not self._lost.is_set():
            self._inbox.drain()     # what arrived before the link broke is routed (never acknowledged)
            self._set_lost(reason)

    def _route_messages(self, inbox: collections.deque[tuple[str, bytes, int, int, int, int]]) -> None:
        self.drains += 1
        acks, gen = self.acks, self.generation
        # Not `self.up`: a persistent session's queued messages arrive right after the CONNACK,
        # before the SUBACK sets it; they are this connection's to acknowledge all the same (left
        # unacknowledged they would fill the broker's Receive Maximum for the connection's life).
        live = acks is not None and not acks.closed
        max_payload = self.config.max_payload_bytes
        cache = self._route_cache
        n = 0
        self._mono = time.monotonic()
        held: list[Pending] = []    # the drain's own hold on each message, released at its end
        while inbox and n < DRAIN_MAX:
            topic, payload, qos, mid, receive_ns, msg_gen = inbox.popleft()
            n += 1
            if qos and live and msg_gen == gen:
                entry = self._entry = acks.received(mid)  # type: ignore[union-attr]
                held.append(entry)
            else:
                self._entry = None
            if len(payload) > max_payload:
                self.reject(Reject(OVERSIZE, topic, payload[:REJECT_HEAD_BYTES], receive_ns,
                                   f"payload of {len(payload)} bytes exceeds max_payload_bytes {max_payload}",
                                   None, len(payload)))
            else:
                routes = cache.get(topic)
                if routes is None:
                    routes = [r for r in self._routes.values() if any(topic_matches(f, topic) for f in r.filters)]
                    if len(cache) < _ROUTE_CACHE_MAX:
                        cache[topic] = routes
                for route in routes:
                    try:
                        route.handle(topic, payload, receive_ns, self)
                    except Exception as err:  # noqa: BLE001 - a route's bug must not stop the connection
                        self._route_failed(route, err, topic, payload, receive_ns)
        if held:
            # Messages that produced no samples are acknowledged now; the others wait for their
            # devices' commits. One settle per drain: their PUBACKs leave together.
            acks.settle(held)   # type: ignore[union-attr]
        self.messages += n
        self._entry = None
        for view in self._touched:
            view.wake()
        self._touched.clear()

    def _route_failed(self, route: Route, err: Exception, topic: str, payload: bytes, receive_ns: int) -> None:
        level = logging.DEBUG if self.rejects[ROUTE_ERROR] else logging.ERROR   # the traceback once
        log.log(level, "shared connection %s: route %s failed on %s", self.name, type(route).__name__, topic,
                exc_info=err)
        self.reject(Reject(ROUTE_ERROR, topic, payload[:REJECT_HEAD_BYTES], receive_ns,
                           f"{type(err).__name__}: {err}", None, len(payload)))

    # --- routing.RouteOutput ------------------------------------------------------

    def samples(self, device_id: str, samples: list[Sample]) -> None:
        view = self.views.get(device_id)
        if view is None:
            return
        view.offer(samples, self._entry, self._mono)
        self._touched.add(view)

    def birth(self, device_id: str, identity: IdentityEvidence) -> None:
        view = self.views.get(device_id)
        if view is None:
            return
        identity = dataclasses.replace(identity, endpoint=view.endpoint,
                                       details={**identity.details, **self.tls_details})
        view.on_birth(identity, self._mono)
        self._touched.add(view)

    def death(self, device_id: str, reason: str, ts_ns: int) -> None:
        view = self.views.get(device_id)
        if view is not None:
            view.on_death(reason)
            self._touched.add(view)

    def reject(self, reject: Reject) -> None:
        self.rejects[reject.reason] += 1
        view = self.views.get(reject.device_id) if reject.device_id else None
        if view is not None:
            view.seen(self._mono)
            self._touched.add(view)
            view.report(PayloadError(f"{reject.reason}: {reject.detail}"), reject.topic, reject.payload_head)
        elif reject.reason == OVERSIZE:
            log.debug("shared connection %s: %s on %s", self.name, reject.detail, reject.topic)
        if self._owner.on_reject is not None:
            self._owner.on_reject(reject)

    def field_error(self, device_id: str, error: Exception, topic: str, payload: bytes) -> None:
        view = self.views.get(device_id)
        if view is not None:
            view.report(error, topic, payload)

    def unconfigured(self, device_id: str, topic: str, fields: Mapping[str, str], suggestion: str) -> None:
        rec = self.unconfigured_seen.get(device_id)
        if rec is None:
            rec = self.unconfigured_seen[device_id] = {
                "device_id": device_id, "connection": self.name, "topic": topic, "fields": dict(fields),
                "suggestion": suggestion, "first_seen_ns": now_ns(), "messages": 0}
            log.warning("shared connection %s: device %r publishes on %s but is not configured; "
                        "suggested config:\n%s", self.name, device_id, topic, suggestion)
            if self._owner.on_event is not None:
                self._owner.on_event(UNCONFIGURED_DEVICE, {k: v for k, v in rec.items() if k != "messages"})
        rec["messages"] += 1

    def stats(self) -> dict[str, Any]:
        return {"name": self.name, "up": self.up, "client_id": self.client_id, "devices": len(self.views),
                "filters": self.filters, "messages": self.messages, "drains": self.drains,
                "rejects": dict(self.rejects), "unconfigured": sorted(self.unconfigured_seen),
                "in_flight": self.acks.in_flight if self.acks is not None else 0,
                "last_error": self.last_error}
