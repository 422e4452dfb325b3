"""Sparkplug B as a host application sees it: one session per edge node.

`SparkplugHost.handle(topic, payload, receive_ns)` takes every message of the edge nodes it
listens to and says what follows, as an `Outcome`: samples for the configured devices, commands
to publish (a rebirth request), devices born or dead, identity evidence, onboarding suggestions
for devices nobody configured, and the payloads it refused (dead letters, edge.rejects reasons).
It does no I/O, so the MQTT side (connectors/mqtt) only delivers and publishes.

Rules (Sparkplug B 3.0, host application):
- NBIRTH starts a session: it resets the alias table and the sequence number, and its `bdSeq`
  metric is remembered. An NDEATH whose `bdSeq` differs belongs to an earlier session (the
  broker delivers a stale will late) and is ignored; a matching one ends the session: the node
  and its devices are offline.
- DBIRTH adds its device's aliases (aliases are unique across an edge node) and brings the device
  online; DDEATH takes it offline.
- Every NBIRTH/NDATA/DBIRTH/DDATA/DDEATH carries `seq`, 0-255 and wrapping, one counter per edge
  node. A gap means messages were lost: counted, and a rebirth is requested (an NCMD with
  `Node Control/Rebirth` = true), at most one per `rebirth_interval_s` per node. Data after a
  gap is still used: what arrived is valid, only what was lost is missing.
- Data from a node whose NBIRTH we have not seen (the gateway started after it) also asks for a
  rebirth: without the birth, aliases cannot be resolved.
- Metrics map to signals by name: a signal's `address` is the metric's name (`Power/kW`).
- A metric's timestamp, else the payload's, else the arrival time is the sample's time
  (`time_sources(device_id)` counts which).
"""
from __future__ import annotations

import collections
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from edge.errors import PayloadError
from edge.model import IdentityEvidence, Quality, Sample, SignalSpec
from edge.rejects import BAD_SPARKPLUG, UNKNOWN_DEVICE, UNMAPPABLE

from . import codec, topic as topics
from .codec import Metric, Payload

DeviceKey = tuple[str, str, str | None]   # group, edge node, device (None: the node itself)
BAD_VALUE = ""
NS_PER_MS = 1_000_000
REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"
_SERIAL = re.compile(r"serial", re.IGNORECASE)
_MODEL = re.compile(r"model|manufacturer|vendor|make|firmware|hardware|version|product|part", re.IGNORECASE)
_IDENTITY_CHARS = 200


@dataclass(frozen=True)
class Binding:
    """A configured device: its id, and its signals by metric name."""

    device_id: str
    signals: Mapping[str, SignalSpec]


@dataclass
class Suggestion:
    """A device that was born but is not configured: enough to write its config block."""

    key: DeviceKey
    metrics: list[tuple[str, str]]          # name, datatype
    identity: IdentityEvidence


@dataclass
class Refused:
    reason: str
    error: PayloadError
    device_id: str | None


@dataclass
class Outcome:
    samples: list[Sample] = field(default_factory=list)
    commands: list[tuple[str, bytes]] = field(default_factory=list)   # topic, payload
    online: list[str] = field(default_factory=list)                   # device ids born
    offline: list[tuple[str, str]] = field(default_factory=list)      # device id, why
    identities: list[tuple[str, IdentityEvidence]] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    problems: list[tuple[str | None, PayloadError]] = field(default_factory=list)  # per metric


@dataclass
class NodeSession:
    alive: bool = False
    bd_seq: int | None = None
    next_seq: int | None = None
    aliases: dict[int, tuple[str | None, str]] = field(default_factory=dict)  # alias -> device, name
    devices: set[str] = field(default_factory=set)          # devices born in this session
    last_rebirth: float | None = None


@dataclass
class Counters:
    messages: int = 0
    sequence_gaps: int = 0
    rebirths_requested: int = 0
    rebirths_suppressed: int = 0     # wanted, but within rebirth_interval_s of the last
    stale_deaths: int = 0


class SparkplugHost:
    def __init__(self, bindings: Mapping[DeviceKey, Binding], *, rebirth_interval_s: float = 10.0,
                 max_metrics: int = codec.MAX_METRICS, clock: Callable[[], float] = time.monotonic):
        self.bindings = dict(bindings)
        self.rebirth_interval_s = rebirth_interval_s
        self.max_metrics = max_metrics
        self.counters = Counters()
        self.sessions: dict[tuple[str, str], NodeSession] = {}
        self._clock = clock
        self._time_sources: dict[str, collections.Counter[str]] = {}   # device id -> origin -> n

    def time_sources(self, device_id: str) -> dict[str, int]:
        return dict(self._time_sources.get(device_id, {}))

    def handle(self, topic: str, payload: bytes, receive_ns: int) -> Outcome:
        out = Outcome()
        try:
            t = topics.parse(topic)
        except PayloadError as err:
            out.refused.append(Refused(BAD_SPARKPLUG, err, None))
            return out
        if t is None or t.kind in ("NCMD", "DCMD"):
            return out        # STATE, outside the namespace, or commands (ours or another host's)
        self.counters.messages += 1
        session = self.sessions.setdefault(t.node_key, NodeSession())
        binding = self.bindings.get((t.group, t.node, t.device))
        try:
            decoded = codec.decode(payload, max_metrics=self.max_metrics)
        except PayloadError as err:
            out.refused.append(Refused(BAD_SPARKPLUG, err, binding.device_id if binding else None))
            self._rebirth(t, session, out)   # what it carried (a birth, a seq) is lost
            return out
        if t.kind == "NDEATH":
            self._node_death(t, session, decoded, out)
            return out
        self._check_seq(t, session, decoded, out)
        if t.kind == "NBIRTH":
            self._node_birth(t, session, decoded)
        elif t.kind == "DBIRTH":
            self._device_birth(t, session, decoded)
        elif not session.alive:
            self._rebirth(t, session, out)
        if t.kind == "DDEATH":
            session.devices.discard(t.device or "")
            if binding is not None:
                out.offline.append((binding.device_id, f"DDEATH on {topic}"))
            return out
        born = t.kind in ("NBIRTH", "DBIRTH")
        if born:
            self._birth_evidence(t, decoded, binding, out)
        if binding is None:
            if t.kind == "DDATA":
                out.refused.append(Refused(UNKNOWN_DEVICE, PayloadError(
                    f"device {t.device!r} of edge node {t.group}/{t.node} is not configured"), None))
            return out
        self._samples(t, session, decoded, binding, receive_ns, born, out)
        return out

    # --- session rules ------------------------------------------------------------------------

    def _check_seq(self, t: topics.Topic, session: NodeSession, p: Payload, out: Outcome) -> None:
        seq = p.seq
        if seq is None or not 0 <= seq <= 255:
            out.problems.append((None, PayloadError(f"{t.kind} of {t.group}/{t.node}: seq {seq} "
                                                    "missing or outside 0-255")))
            return
        expected = session.next_seq
        session.next_seq = (seq + 1) % 256
        if t.kind == "NBIRTH" or expected is None or seq == expected:
            return
        self.counters.sequence_gaps += 1
        out.problems.append((None, PayloadError(
            f"edge node {t.group}/{t.node}: seq {seq} where {expected} was due (messages lost)")))
        self._rebirth(t, session, out)

    def _rebirth(self, t: topics.Topic, session: NodeSession, out: Outcome) -> None:
        if any(cmd_topic == t.command() for cmd_topic, _ in out.commands):
            return     # one request per message, however many reasons it gave
        now = self._clock()
        if session.last_rebirth is not None and now - session.last_rebirth < self.rebirth_interval_s:
            self.counters.rebirths_suppressed += 1
            return
        session.last_rebirth = now
        self.counters.rebirths_requested += 1
        out.commands.append((t.command(), codec.rebirth_request(time.time_ns() // NS_PER_MS)))

    def _node_birth(self, t: topics.Topic, session: NodeSession, p: Payload) -> None:
        session.alive = True
        session.bd_seq = _bd_seq(p)
        session.devices.clear()
        session.aliases = {m.alias: (None, m.name) for m in p.metrics if m.alias is not None and m.name}

    def _device_birth(self, t: topics.Topic, session: NodeSession, p: Payload) -> None:
        session.aliases = {a: v for a, v in session.aliases.items() if v[0] != t.device}
        session.aliases.update({m.alias: (t.device, m.name) for m in p.metrics
                                if m.alias is not None and m.name})
        session.devices.add(t.device or "")

    def _node_death(self, t: topics.Topic, session: NodeSession, p: Payload, out: Outcome) -> None:
        bd_seq = _bd_seq(p)
        if session.bd_seq is not None and bd_seq is not None and bd_seq != session.bd_seq:
            self.counters.stale_deaths += 1   # the will of an earlier session, delivered late
            out.problems.append((None, PayloadError(
                f"NDEATH of {t.group}/{t.node} with bdSeq {bd_seq}, the session's is "
                f"{session.bd_seq}: an earlier session's, ignored")))
            return
        why = f"NDEATH of edge node {t.group}/{t.node}"
        for (group, node, _device), binding in self.bindings.items():
            if (group, node) == t.node_key:
                out.offline.append((binding.device_id, why))
        self.sessions[t.node_key] = NodeSession(last_rebirth=session.last_rebirth)

    # --- mapping ------------------------------------------------------------------------------

    def _birth_evidence(self, t: topics.Topic, p: Payload, binding: Binding | None, out: Outcome) -> None:
        identity = birth_identity(t, p.metrics)
        if binding is None:
            if t.kind == "DBIRTH" or not self._node_has_devices_configured(t):
                out.suggestions.append(Suggestion((t.group, t.node, t.device),
                                                  [(m.name, m.type_name) for m in p.metrics
                                                   if m.name and not is_control(m.name)], identity))
            return
        out.online.append(binding.device_id)
        out.identities.append((binding.device_id, identity))

    def _node_has_devices_configured(self, t: topics.Topic) -> bool:
        return any((g, n) == t.node_key for g, n, _ in self.bindings)

    def _samples(self, t: topics.Topic, session: NodeSession, p: Payload, binding: Binding,
                 receive_ns: int, born: bool, out: Outcome) -> None:
        mapped = 0
        for m in p.metrics:
            name = m.name
            if name is None and m.alias is not None:
                owner = session.aliases.get(m.alias)
                if owner is None or owner[0] != t.device:
                    out.problems.append((binding.device_id, PayloadError(
                        f"{t.kind}: alias {m.alias} is not in the birth of {t.group}/{t.node}"
                        f"{'/' + t.device if t.device else ''}")))
                    self._rebirth(t, session, out)
                    continue
                name = owner[1]
            spec = binding.signals.get(name or "")
            if spec is None:
                continue
            mapped += 1
            out.samples.append(self._sample(binding.device_id, spec, m, p, receive_ns, out))
        if not mapped and not born and p.metrics:
            out.refused.append(Refused(UNMAPPABLE, PayloadError(
                f"{t.kind}: none of its {len(p.metrics)} metrics is a configured signal "
                f"({sorted(binding.signals)})"), binding.device_id))

    def _sample(self, device_id: str, spec: SignalSpec, m: Metric, p: Payload, receive_ns: int,
                out: Outcome) -> Sample:
        ts_ms = m.timestamp_ms if m.timestamp_ms is not None else p.timestamp_ms
        counts = self._time_sources.setdefault(device_id, collections.Counter())
        counts["device" if ts_ms is not None else "gateway"] += 1
        ts_ns = ts_ms * NS_PER_MS if ts_ms is not None else receive_ns
        if m.unsupported is not None or m.value is None:
            if m.unsupported is not None:
                out.problems.append((device_id, PayloadError(
                    f"signal {spec.name}: metric {m.name or m.alias} is a {m.unsupported}, not a reading")))
            return Sample(device_id, spec.name, ts_ns, BAD_VALUE, Quality.BAD)
        value, quality, problem = spec.check(m.value)
        if problem is not None:
            out.problems.append((device_id, problem))
        return Sample(device_id, spec.name, ts_ns, value, quality)


def birth_identity(t: topics.Topic, metrics: list[Metric]) -> IdentityEvidence:
    """A birth certificate as identity evidence: where it was born, and the metrics that look
    like a serial number (the fingerprint) or a model, vendor, firmware."""
    serial = ""
    details = {"group": t.group, "edge_node": t.node}
    if t.device is not None:
        details["device"] = t.device
    for m in metrics:
        if not m.name or m.value is None or isinstance(m.value, bool):
            continue
        text = str(m.value)[:_IDENTITY_CHARS]
        if not serial and _SERIAL.search(m.name) and text:
            serial = text
        elif _MODEL.search(m.name):
            details[m.name[:_IDENTITY_CHARS]] = text
    endpoint = f"{topics.NAMESPACE}/{t.group}/{t.node}" + (f"/{t.device}" if t.device else "")
    return IdentityEvidence(protocol="sparkplug", endpoint=endpoint, serial_number=serial, details=details)


def _bd_seq(p: Payload) -> int | None:
    for m in p.metrics:
        if m.name == BDSEQ_METRIC and isinstance(m.value, int) and not isinstance(m.value, bool):
            return m.value
    return None


def is_control(name: str) -> bool:
    return name == BDSEQ_METRIC or name.startswith(("Node Control/", "Device Control/"))
