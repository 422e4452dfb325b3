"""The "topic" route kind: JSON / key=value / bare-value telemetry on a topic or topic template.

`topic: factory/{line}/{device}/telemetry` subscribes `factory/+/+/telemetry` and reads the
device id from the `{device}` level (other fields, like `{line}`, are bound and shown in the
onboarding suggestion). Every configured device on the same template shares one route, each with
its own signal mapping; an id seen on the template that no device block configures is reported
(`RouteOutput.unconfigured`) and its messages rejected as UNKNOWN_DEVICE, never silently dropped.
A topic without `{device}` belongs to exactly one device. The identity (birth) topic may be a
template too: `factory/{line}/{device}/birth`.
"""
from __future__ import annotations

from typing import Any

import yaml

from connectors.mqtt.config import FieldPath, MqttConnection
from connectors.mqtt.mapping import DeviceMapping, birth_evidence, limits_of, parse_birth
from connectors.mqtt.routing import (INVALID, REJECT_HEAD_BYTES, UNKNOWN_DEVICE, UNMAPPABLE, Link, Reject,
                                     RouteOutput, register_route_kind)
from connectors.mqtt.topics import TopicTemplate
from connectors.validation import address_of, connection_of
from edge.errors import PayloadError
from edge.model import DeviceSpec

DEVICE_FIELD = "device"
_TOPIC_CACHE_MAX = 100_000   # topics -> device id: one entry per device and topic, bounded anyway


class TopicRoute:
    def __init__(self, conn: MqttConnection):
        self.template = TopicTemplate.parse(conn.topic)
        self.identity = TopicTemplate.parse(conn.identity_topic) if conn.identity_topic else None
        self.filters = tuple(t.filter for t in (self.template, self.identity) if t is not None)
        self._by_id = DEVICE_FIELD in self.template.names
        self._limits = limits_of(conn)
        self._mappings: dict[str, DeviceMapping] = {}
        self._example: DeviceSpec | None = None
        self._broker = conn.broker
        # topic -> (device id or None for an unconfigured one, True for a birth topic)
        self._topics: dict[str, tuple[str | None, bool, dict[str, str]]] = {}

    def add_device(self, device: DeviceSpec) -> None:
        if not self._by_id and self._mappings:
            other = next(iter(self._mappings))
            raise ValueError(f"topic {self.template.text!r} has no {{{DEVICE_FIELD}}} level, so it belongs to "
                             f"one device; {other!r} has it already")
        if self._by_id and self.identity is not None and DEVICE_FIELD not in self.identity.names:
            raise ValueError(f"identity_topic {self.identity.text!r} needs a {{{DEVICE_FIELD}}} level too")
        self._mappings[device.id] = DeviceMapping(device, connection_of(MqttConnection, device))
        self._example = self._example or device
        self._topics.clear()    # an id reported as unconfigured may be configured now

    def time_sources(self, device_id: str) -> dict[str, int]:
        mapping = self._mappings.get(device_id)
        return dict(mapping.time_sources) if mapping is not None else {}

    def connected(self, link: Link) -> None:
        pass    # nothing to ask the devices for: they publish on their own

    def handle(self, topic: str, payload: bytes, receive_ns: int, out: RouteOutput) -> None:
        known = self._topics.get(topic)
        if known is None:
            known = self._classify(topic)
            if known is None:
                return      # another route's message on an overlapping filter
        device_id, is_birth, fields = known
        if device_id is None:
            dev = fields[DEVICE_FIELD]
            out.unconfigured(dev, topic, fields, self._suggestion(dev, fields))
            out.reject(_reject(UNKNOWN_DEVICE, topic, payload, receive_ns,
                               f"device {dev!r} is not configured on {self.template.text}", dev))
            return
        if is_birth:
            try:
                birth = parse_birth(payload, self._limits)
            except PayloadError as err:
                out.reject(_reject(INVALID, topic, payload, receive_ns, f"birth message: {err}", device_id))
                return
            out.birth(device_id, birth_evidence(birth, "", {}))
            return
        mapping = self._mappings[device_id]

        def field_error(name: str, err: PayloadError) -> None:
            out.field_error(device_id, err, topic, payload)

        try:
            samples = mapping.samples(payload, receive_ns, field_error)
        except PayloadError as err:
            out.reject(_reject(INVALID, topic, payload, receive_ns, str(err), device_id))
            return
        for problem in mapping.unmatched_problems():
            out.field_error(device_id, problem, topic, payload)
        if samples:
            out.samples(device_id, samples)
        else:
            out.reject(_reject(UNMAPPABLE, topic, payload, receive_ns,
                               f"no field of it maps to a signal of {device_id}", device_id))

    def _classify(self, topic: str) -> tuple[str | None, bool, dict[str, str]] | None:
        result: tuple[str | None, bool, dict[str, str]] | None = None
        for template, is_birth in ((self.identity, True), (self.template, False)):
            fields = template.bind(topic) if template is not None else None
            if fields is None:
                continue
            if self._by_id:
                dev = fields[DEVICE_FIELD]
                result = (dev if dev in self._mappings else None, is_birth, fields)
            elif self._mappings:
                result = (next(iter(self._mappings)), is_birth, fields)
            break
        if result is not None and len(self._topics) < _TOPIC_CACHE_MAX:
            self._topics[topic] = result
        return result

    def _suggestion(self, device_id: str, fields: dict[str, str]) -> str:
        """The YAML that onboards `device_id` like the devices already on this template."""
        block: dict[str, Any] = {"id": device_id, "type": "mqtt"}
        if fields.get("line"):
            block["line"] = fields["line"]
        conn: dict[str, Any] = {"topic": self.template.text}
        if self.identity is not None:
            conn["identity_topic"] = self.identity.text
        ex = self._example
        if self._broker:
            conn = {"broker": self._broker, **conn}
        elif ex is not None:
            conn = {"host": ex.connection.get("host"), "port": ex.connection.get("port"), **conn}
        block["connection"] = conn
        if ex is not None:
            block["signals"] = [{"name": s.name, "address": address_of(FieldPath, ex, s).root}
                                for s in ex.signals]
        head = (f"# seen on {self.template.text}; add {device_id!r} to the ids of that block, "
                "or add this block:\n")
        return head + yaml.safe_dump([block], sort_keys=False, allow_unicode=True)


def _reject(reason: str, topic: str, payload: bytes, receive_ns: int, detail: str,
            device_id: str | None) -> Reject:
    return Reject(reason=reason, topic=topic, payload_head=payload[:REJECT_HEAD_BYTES], receive_ns=receive_ns,
                  detail=detail, device_id=device_id, payload_bytes=len(payload))


register_route_kind("topic", key=lambda conn: (conn.topic, conn.identity_topic), make=TopicRoute)
