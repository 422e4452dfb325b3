"""What `shangyun discover mqtt` learns about Sparkplug B from listening (connectors/mqtt/discover.py).

Per group / edge node / device: messages by type, births and deaths, and its metrics with their
datatypes and aliases (from the births) and how many values of each arrived (births and data;
data sent by alias only is resolved through the births, as the host application does). From that,
the suggested device block for the Sparkplug route (route.device_block), which a gateway collects
from unchanged.

Listening is passive: no rebirth is requested. A node whose births went out before discovery
started shows its data, by name where the data names its metrics, and its aliases as unresolved.

Bounded for any broker: at most `max_devices` devices and `max_metrics` metrics each are tracked;
messages beyond are only counted.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from edge.errors import PayloadError

from . import codec, topic as topics
from .route import device_block, not_suggested
from .session import DeviceKey

MAX_METRICS = 1000
BIRTHS = frozenset({"NBIRTH", "DBIRTH"})
DATA = frozenset({"NDATA", "DDATA"})


@dataclass
class MetricSeen:
    name: str
    datatype: str = "none"
    alias: int | None = None
    values: int = 0        # in births and data

    @property
    def why_not_suggested(self) -> str:
        return not_suggested(self.name, self.datatype)


@dataclass
class SparkplugDevice:
    key: DeviceKey
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)  # message type -> n
    metrics: dict[str, MetricSeen] = field(default_factory=dict)
    unresolved_aliases: set[int] = field(default_factory=set)   # data by alias with no birth seen
    untracked_metrics: int = 0
    problem: str = ""      # the last payload it sent that could not be read

    @property
    def where(self) -> str:
        group, node, device = self.key
        return f"{group}/{node}" + (f"/{device}" if device else "")

    @property
    def born(self) -> bool:
        return any(self.kinds[k] for k in BIRTHS)

    def data_rate(self, seconds: float) -> float:
        return sum(self.kinds[k] for k in DATA) / seconds if seconds > 0 else 0.0


class SparkplugSurvey:
    def __init__(self, *, max_devices: int = 1000, max_metrics: int = MAX_METRICS):
        self.devices: dict[DeviceKey, SparkplugDevice] = {}
        self.untracked_messages = 0
        self.bad_topics = 0
        self._aliases: dict[tuple[str, str], dict[int, tuple[str | None, str]]] = {}
        self._max_devices, self._max_metrics = max_devices, max_metrics

    def add(self, topic: str, payload: bytes) -> tuple[str, dict[str, str], str]:
        """Take one message; returns its (shape, fields, problem) for the per-topic listing."""
        try:
            t = topics.parse(topic)
        except codec.SparkplugError as err:
            self.bad_topics += 1
            return "sparkplug b", {}, str(err)
        if t is None:
            return "sparkplug b STATE", {}, ""
        shape = f"sparkplug b {t.kind}"
        key: DeviceKey = (t.group, t.node, t.device)
        dev = self.devices.get(key)
        if dev is None:
            if len(self.devices) >= self._max_devices:
                self.untracked_messages += 1
                return shape, {}, ""
            dev = self.devices[key] = SparkplugDevice(key)
        dev.kinds[t.kind] += 1
        try:
            p = codec.decode(payload)
        except PayloadError as err:
            dev.problem = str(err)
            return shape, {}, str(err)
        if t.kind in BIRTHS:
            self._birth(t, dev, p)
        elif t.kind in DATA:
            self._data(t, dev, p)
        return shape, {m.name: m.type_name for m in p.metrics[:100] if m.name}, ""

    def _birth(self, t: topics.Topic, dev: SparkplugDevice, p: codec.Payload) -> None:
        aliases = self._aliases.setdefault(t.node_key, {})
        if t.kind == "NBIRTH":       # a new session: every alias of the node is void
            aliases.clear()
        else:
            for a in [a for a, (owner, _) in aliases.items() if owner == t.device]:
                del aliases[a]
        for m in p.metrics:
            if not m.name:
                continue
            seen = self._metric(dev, m.name)
            if seen is None:
                continue
            seen.datatype, seen.alias = m.type_name, m.alias
            seen.values += 1
            if m.alias is not None:
                aliases[m.alias] = (t.device, m.name)
                dev.unresolved_aliases.discard(m.alias)

    def _data(self, t: topics.Topic, dev: SparkplugDevice, p: codec.Payload) -> None:
        aliases = self._aliases.get(t.node_key, {})
        for m in p.metrics:
            name = m.name
            if name is None and m.alias is not None:
                owner = aliases.get(m.alias)
                if owner is None or owner[0] != t.device:
                    dev.unresolved_aliases.add(m.alias)
                    continue
                name = owner[1]
            if not name:
                continue
            seen = self._metric(dev, name)
            if seen is None:
                continue
            if seen.datatype == "none":
                seen.datatype = m.type_name
            seen.values += 1

    def _metric(self, dev: SparkplugDevice, name: str) -> MetricSeen | None:
        seen = dev.metrics.get(name)
        if seen is None:
            if len(dev.metrics) >= self._max_metrics:
                dev.untracked_metrics += 1
                return None
            seen = dev.metrics[name] = MetricSeen(name)
        return seen

    # --- output -----------------------------------------------------------------------------

    def table(self, seconds: float) -> list[str]:
        if not self.devices:
            return []
        rows = ["", "Sparkplug B (group/edge node[/device]):"]
        for dev in sorted(self.devices.values(), key=lambda d: d.where):
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(dev.kinds.items()))
            rows.append(f"  {dev.where:<38} {kinds}; data {dev.data_rate(seconds):.2f} msg/s"
                        + ("" if dev.born else "; no birth seen")
                        + (f" ({dev.problem})" if dev.problem else ""))
            for m in sorted(dev.metrics.values(), key=lambda m: m.name):
                alias = f"alias {m.alias}" if m.alias is not None else ""
                left_out = m.why_not_suggested
                rows.append(f"    {m.name:<36} {m.datatype:<10} {alias:<10} {m.values:>6} values "
                            f"{m.values / seconds if seconds > 0 else 0.0:>7.2f}/s"
                            + (f"  (not suggested: {left_out})" if left_out else ""))
            if dev.unresolved_aliases:
                shown = ", ".join(str(a) for a in sorted(dev.unresolved_aliases)[:20])
                rows.append(f"    aliases without a birth seen: {shown} (the node's birth came before "
                            "discovery: restart it, or listen while it is born)")
            if dev.untracked_metrics:
                rows.append(f"    (+{dev.untracked_metrics} values of metrics beyond the first {len(dev.metrics)})")
        if self.untracked_messages:
            rows.append(f"  (+{self.untracked_messages} messages of devices beyond the first {len(self.devices)})")
        return rows

    def suggested_devices(self, connection: dict[str, Any]) -> list[dict[str, Any]]:
        """A device block per device or edge node with a metric a signal can hold, `connection`
        (host, port, TLS, the credentials' names) merged into its connection. Ids may repeat
        (`press-1` under two edge nodes): the caller makes them unique among all it suggests."""
        blocks = []
        for dev in sorted(self.devices.values(), key=lambda d: d.where):
            names = [m.name for m in dev.metrics.values() if not m.why_not_suggested]
            if names:
                block = device_block(dev.key, names)
                blocks.append({"id": block["id"], "name": dev.where, "type": block["type"],
                               "connection": {**connection, **block["connection"]}, "signals": block["signals"]})
        return blocks

