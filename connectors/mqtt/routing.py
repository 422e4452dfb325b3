"""Routes: how messages on a shared broker connection become samples per device.

One broker connection (connectors/mqtt/shared.py) is shared by every device that names it: one
paho client, one session, one subscription set. What it receives is handed to *routes*. A route
owns topic filters and turns each message, `(topic, payload, receive_ns)`, into calls on a
`RouteOutput`: samples per device id, births (identity evidence) and deaths, rejects (the whole
message refused, for the dead letters), field errors, and devices seen but not configured.

How a route plugs in
--------------------
1. A route kind is registered once, on import of its module:

       register_route_kind("sparkplug", key=lambda conn: ..., make=lambda conn: MyRoute(conn))

   A device uses the kind `route_kind_of(conn)` names: `payload_format: sparkplug` -> the
   "sparkplug" kind (its module, `connectors.mqtt.sparkplug`, is imported on first use; its own
   settings are the connection's free-form `sparkplug:` mapping, validated by the route), any
   other payload format -> "topic" (JSON / key=value / bare values on a topic or topic
   template, connectors/mqtt/template_route.py).
2. Devices whose kind and `key(conn)` are equal share one route object on a connection; the
   connection calls `route.add_device(device)` for each of them before any message flows (a
   conflict, e.g. two devices claiming the same static topic, raises ValueError with the reason).
3. The connection subscribes the union of every route's `filters` (at the connection's QoS) and
   calls `route.connected(link)` after each (re)subscription: `link.publish(...)` sends on the
   same connection (a Sparkplug rebirth request, NCMD), safe from the event loop thread.
4. For each message whose topic matches one of a route's filters (paho's topic_matches_sub;
   a topic matching filters of several routes goes to each of them), the connection calls
   `route.handle(topic, payload, receive_ns, out)` on the event loop thread, in receive order.
   `handle` must not block or await, and must not raise for bad input: it reports it on `out`.
   What it puts on `out` for a message is what that message's acknowledgement waits for: a
   QoS 1 message is acknowledged once every device batch holding its samples was committed
   (in receive order per connection), or at once when it produced no samples.

Optional: `route.time_sources(device_id) -> dict[str, int]`, the device's samples per timestamp
origin ("device": from the payload, "gateway": arrival time), shown by the device's status.

Payload size (`max_payload_bytes` of the connection) is checked by the connection before a
route sees a message; a larger one is rejected with reason OVERSIZE.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Protocol

from edge.model import DeviceSpec, IdentityEvidence, Sample

# Why a whole message was refused (the dead letters' reasons, issue 11).
INVALID = "invalid"            # not decodable in the configured payload format
OVERSIZE = "oversize"          # larger than max_payload_bytes
UNKNOWN_DEVICE = "unknown_device"  # on a route's topics, but for no configured device
UNMAPPABLE = "unmappable"      # decodable, but nothing in it maps to a configured signal

REJECT_HEAD_BYTES = 256        # how much of a rejected payload is kept


@dataclass(frozen=True, slots=True)
class Reject:
    """A message refused as a whole: counted per reason, kept (bounded) for inspection."""

    reason: str                # one of the constants above (a route may add its own)
    topic: str
    payload_head: bytes        # the first REJECT_HEAD_BYTES bytes
    receive_ns: int
    detail: str                # what was wrong, for a person
    device_id: str | None = None   # when the route could tell whose message it was
    payload_bytes: int = 0     # the full length


class RouteOutput(Protocol):
    """What a route reports for one message (called inside `Route.handle`)."""

    def samples(self, device_id: str, samples: list[Sample]) -> None:
        """Samples of a configured device (the list is handed over: do not reuse it)."""

    def birth(self, device_id: str, identity: IdentityEvidence) -> None:
        """The device presented its identity (a birth message): it is online from now on."""

    def death(self, device_id: str, reason: str, ts_ns: int) -> None:
        """The device is gone (a death certificate): offline from `ts_ns` until it sends again."""

    def reject(self, reject: Reject) -> None:
        """The whole message is refused; nothing of it is stored."""

    def field_error(self, device_id: str, error: Exception, topic: str, payload: bytes) -> None:
        """One field of a device's message was bad (its sample is BAD); the rest is stored."""

    def unconfigured(self, device_id: str, topic: str, fields: Mapping[str, str], suggestion: str) -> None:
        """A device id seen on the route's topics that no device block configures: `fields`
        are the values bound from the topic, `suggestion` the YAML that would onboard it.
        Reported once per id by the connection (counted every time)."""


class Link(Protocol):
    """The shared connection, as a route may use it."""

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None: ...


class Route(Protocol):
    filters: tuple[str, ...]

    def add_device(self, device: DeviceSpec) -> None: ...

    def connected(self, link: Link) -> None: ...

    def handle(self, topic: str, payload: bytes, receive_ns: int, out: RouteOutput) -> None: ...


@dataclass(frozen=True)
class RouteKind:
    key: Callable[[Any], Hashable]     # MqttConnection -> what devices sharing a route have equal
    make: Callable[[Any], Route]       # MqttConnection -> a new route


_KINDS: dict[str, RouteKind] = {}


def register_route_kind(name: str, *, key: Callable[[Any], Hashable], make: Callable[[Any], Route]) -> None:
    _KINDS[name] = RouteKind(key=key, make=make)


def route_kind_of(conn: Any) -> str:
    """The route kind a device's MqttConnection uses."""
    return "sparkplug" if getattr(conn, "payload_format", "") == "sparkplug" else "topic"


def route_kind(name: str) -> RouteKind:
    """The registered kind; its module is imported on first use (`connectors.mqtt.<name>`)."""
    if name not in _KINDS:
        import importlib

        try:
            importlib.import_module(f"connectors.mqtt.{name if name != 'topic' else 'template_route'}")
        except ModuleNotFoundError as err:
            raise ValueError(f"no MQTT route kind {name!r} is available ({err})") from None
    if name not in _KINDS:
        raise ValueError(f"no MQTT route kind {name!r} is registered")
    return _KINDS[name]
