"""The Sparkplug B route on a shared MQTT connection (connectors/mqtt/routing.py).

Every device with `payload_format: sparkplug` on a connection shares one route, so each edge
node has one session (sequence numbers and aliases are per node, whichever devices of it are
configured). A device block names its place in the Sparkplug namespace:

    connection: {broker: plant, topic: "spBv1.0/plant1/+/gw-7/#", payload_format: sparkplug,
                 sparkplug: {group: plant1, edge_node: gw-7, device: press-3}}
    signals: [{name: power_kw, address: "Power/kW"}]   # address: the metric's name

`device` omitted: the edge node's own metrics (NBIRTH/NDATA). `topic` is what is subscribed and
must cover the node's and the device's messages; a wider one (`spBv1.0/plant1/#`) also shows
the group's unconfigured devices as onboarding suggestions.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Hashable, Iterable

import paho.mqtt.client as mqtt
import yaml
from pydantic import BaseModel, ConfigDict, Field

from connectors.naming import unique_name
from connectors.mqtt import routing
from connectors.mqtt.config import FieldPath, MqttConnection
from connectors.validation import address_of, connection_of
from edge.errors import SourceError
from edge.model import DeviceSpec

from . import topic as topics
from .session import Binding, DeviceKey, Outcome, SparkplugHost, Suggestion, is_control

log = logging.getLogger("shangyun.connectors.mqtt")
_SLUG = re.compile(r"[^a-z0-9]+")
# Metrics of these types decode, but no signal can hold them (codec.py): not suggested.
_NOT_READINGS = frozenset({"DataSet", "Bytes", "File", "Template", "PropertySet", "PropertySetList", "Unknown"})


class SparkplugSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = Field(min_length=1, pattern=r"^[^/+#]+$")
    edge_node: str = Field(min_length=1, pattern=r"^[^/+#]+$")
    device: str | None = Field(default=None, pattern=r"^[^/+#]+$",
                               description="the device under the edge node; none: the node itself")
    rebirth_interval_s: float = Field(default=10.0, ge=0,
                                      description="at most one rebirth request per edge node this often")


def settings_of(conn: MqttConnection) -> SparkplugSettings:
    return SparkplugSettings.model_validate(conn.sparkplug or {})


class SparkplugRoute:
    def __init__(self, conn: MqttConnection | None = None):
        self.host = SparkplugHost({})
        self._filters: list[str] = []
        self._link: routing.Link | None = None
        self.commands_unsent = 0      # rebirth requests wanted before the link was up

    @property
    def filters(self) -> tuple[str, ...]:
        return tuple(self._filters)

    def add_device(self, device: DeviceSpec) -> None:
        conn = connection_of(MqttConnection, device)
        s = settings_of(conn)
        key = (s.group, s.edge_node, s.device)
        if key in self.host.bindings:
            raise ValueError(f"device {device.id}: {_where(key)} is already device "
                             f"{self.host.bindings[key].device_id}")
        node_topic = f"{topics.NAMESPACE}/{s.group}/NBIRTH/{s.edge_node}"
        own = f"{topics.NAMESPACE}/{s.group}/DBIRTH/{s.edge_node}/{s.device}" if s.device else node_topic
        for needed in (node_topic, own):
            if not mqtt.topic_matches_sub(conn.topic, needed):
                raise ValueError(f"device {device.id}: topic {conn.topic!r} does not cover {needed!r} "
                                 f"(use {topics.node_filter(s.group, s.edge_node)!r})")
        signals = {address_of(FieldPath, device, sig).root: sig for sig in device.signals}
        self.host.bindings[key] = Binding(device.id, signals)
        if self.host.rebirth_interval_s > s.rebirth_interval_s or len(self.host.bindings) == 1:
            self.host.rebirth_interval_s = s.rebirth_interval_s
        if conn.topic not in self._filters:
            self._filters.append(conn.topic)

    def connected(self, link: routing.Link) -> None:
        self._link = link

    def time_sources(self, device_id: str) -> dict[str, int]:
        return self.host.time_sources(device_id)

    def handle(self, topic: str, payload: bytes, receive_ns: int, out: routing.RouteOutput) -> None:
        result = self.host.handle(topic, payload, receive_ns)
        self._send(result)
        by_device: dict[str, list[Any]] = {}
        for sample in result.samples:
            by_device.setdefault(sample.device_id, []).append(sample)
        for device_id, identity in result.identities:
            out.birth(device_id, identity)
        for device_id, samples in by_device.items():
            out.samples(device_id, samples)
        for device_id, why in result.offline:
            out.death(device_id, why, receive_ns)
        for refused in result.refused:
            out.reject(routing.Reject(
                reason=refused.reason, topic=topic, payload_head=payload[:routing.REJECT_HEAD_BYTES],
                receive_ns=receive_ns, detail=str(refused.error), device_id=refused.device_id,
                payload_bytes=len(payload)))
        for device_id, err in result.problems:
            if device_id is not None:
                out.field_error(device_id, err, topic, payload)
            else:   # the edge node's (a sequence gap): counted in host.counters
                log.info("sparkplug: %s", err)
        for suggestion in result.suggestions:
            out.unconfigured(suggested_id(suggestion), topic, _fields(suggestion), suggestion_yaml(suggestion))

    def _send(self, result: Outcome) -> None:
        for cmd_topic, cmd in result.commands:
            if self._link is None:
                self.commands_unsent += 1
                continue
            try:
                self._link.publish(cmd_topic, cmd, qos=0)
            except SourceError as err:   # the link dropped under us: the next birth resets all
                self.commands_unsent += 1
                log.info("sparkplug: rebirth request on %s not sent: %s", cmd_topic, err)


def _where(key: tuple[str, str, str | None]) -> str:
    group, node, device = key
    return f"{topics.NAMESPACE}/{group}/{node}" + (f"/{device}" if device else "")


def _fields(s: Suggestion) -> dict[str, str]:
    return key_fields(s.key)


def key_fields(key: DeviceKey) -> dict[str, str]:
    """The `sparkplug:` settings naming this place in the namespace."""
    group, node, device = key
    return {"group": group, "edge_node": node, **({"device": device} if device else {})}


def suggested_id(s: Suggestion) -> str:
    return key_id(s.key)


def key_id(key: DeviceKey) -> str:
    """A device id from its place in the namespace: the device's name, else the edge node's."""
    _group, node, device = key
    return _slug(device or node) or "sparkplug-device"


def suggestion_yaml(s: Suggestion) -> str:
    """A device block to paste (plus the connection's broker or host)."""
    return yaml.safe_dump([device_block(s.key, [name for name, type_name in s.metrics
                                                 if not not_suggested(name, type_name)])],
                          sort_keys=False, allow_unicode=True)


def not_suggested(name: str, type_name: str) -> str:
    """'' for a metric a suggested signal can read; else why it is left out."""
    if is_control(name):
        return "control"
    if type_name in _NOT_READINGS:
        return "no reading"
    # The route maps by FieldPath, which strips whitespace and refuses empty segments (`a..b`):
    # such a name would fail `shangyun check`, or never match.
    try:
        if FieldPath.model_validate(name).root != name:
            return "name not addressable"
    except ValueError:
        return "name not addressable"
    return ""


def device_block(key: DeviceKey, metric_names: Iterable[str]) -> dict[str, Any]:
    """The config block of a Sparkplug device (or edge node, `device` None) with a signal per
    metric, named after it; the connection's broker or host is for the caller to add."""
    group, node, _device = key
    names: set[str] = set()
    signals = []
    for metric in metric_names:
        # Two metrics can slug alike (`Power/kW`, `Power kW`): a signal name must be unique.
        name = unique_name(_slug(metric).replace("-", "_") or "metric", names, sep="_")
        signals.append({"name": name, "address": metric})
    return {
        "id": key_id(key), "type": "mqtt",
        "connection": {"topic": topics.node_filter(group, node), "payload_format": "sparkplug",
                       "sparkplug": key_fields(key)},
        "signals": signals,
    }


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")


def route_key(conn: MqttConnection) -> Hashable:
    return "sparkplug"    # one route per connection: one session per edge node


routing.register_route_kind("sparkplug", key=route_key, make=SparkplugRoute)
