"""`shangyun discover mqtt` (gateway/cli.py mounts `add_parser`): listen on a broker for a while and say what is there.

Per topic: messages, bytes, rate, the payload's shape (JSON object, JSON batch, bare value,
key=value text, Sparkplug B, or not readable) and its fields with their kinds. Topics under
`spBv1.0/` are decoded as Sparkplug B (connectors/mqtt/sparkplug/survey.py) and also listed per
group / edge node / device, with the metrics' datatypes, aliases and rates. The suggested devices
are one block per readable topic and one per Sparkplug device whose metrics are known, in the
config's own form, so an engineer edits names and roles instead of typing paths.

Bounded for any broker: at most `max_topics` topics are tracked (further ones are only counted),
fields are learnt from the first payload of each topic and at most `_MAX_FIELDS` of them.
"""
from __future__ import annotations

import argparse
import re
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from connectors.mqtt.config import MqttConnection
from connectors.mqtt.payload import DEFAULT_LIMITS, parse_json_value, parse_kv
from connectors.mqtt.sparkplug.survey import SparkplugSurvey
from connectors.naming import unique_name
from edge.errors import ConfigError, PayloadError, SourceError

SPARKPLUG_PREFIX = "spBv1.0/"
TIMESTAMP_NAMES = ("ts", "timestamp", "time")
_MAX_FIELDS = 100
_NON_ID = re.compile(r"[^A-Za-z0-9_.\-]+")
_NON_NAME = re.compile(r"[^A-Za-z0-9_]+")


@dataclass
class TopicSeen:
    topic: str
    messages: int = 0
    bytes: int = 0
    shape: str = ""
    fields: dict[str, str] = field(default_factory=dict)   # path -> number / bool / string
    problem: str = ""

    def rate(self, seconds: float) -> float:
        return self.messages / seconds if seconds > 0 else 0.0


@dataclass
class Discovery:
    broker: str
    seconds: float
    topics: dict[str, TopicSeen] = field(default_factory=dict)
    untracked_messages: int = 0      # on topics past max_topics
    sparkplug: SparkplugSurvey = field(default_factory=SparkplugSurvey)

    def table(self) -> str:
        rows = [f"{'topic':40} {'msgs':>6} {'msg/s':>7} {'bytes':>8}  shape / fields"]
        for t in sorted(self.topics.values(), key=lambda t: t.topic):
            what = t.shape + (f": {', '.join(t.fields)}" if t.fields else "") + (f" ({t.problem})" if t.problem else "")
            rows.append(f"{t.topic:40} {t.messages:>6} {t.rate(self.seconds):>7.2f} {t.bytes:>8}  {what}")
        if self.untracked_messages:
            rows.append(f"(+{self.untracked_messages} messages on topics beyond the first {len(self.topics)})")
        rows += self.sparkplug.table(self.seconds)
        return "\n".join(rows)


def connection_from_url(url: str, topic: str, **security: Any) -> MqttConnection:
    """mqtt://host[:port] or mqtts://host[:port] as the connection discovery uses."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"{url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    conn: dict[str, Any] = {"host": parts.hostname, "topic": topic, "tls": parts.scheme == "mqtts",
                            **{k: v for k, v in security.items() if v is not None}}
    if parts.port:
        conn["port"] = parts.port
    try:
        return MqttConnection.model_validate(conn)
    except ValueError as err:
        raise ConfigError(f"discover {url}: {err}") from None


def shape_of(topic: str, payload: bytes) -> tuple[str, dict[str, str], str]:
    """(shape, fields, problem) of one payload that is not Sparkplug B."""
    try:
        doc = parse_json_value(payload, DEFAULT_LIMITS)
    except PayloadError as err:
        if b"=" in payload:
            try:
                return "key=value", _leaves(parse_kv(payload), flat=True), ""
            except PayloadError as kv_err:
                return "unreadable", {}, str(kv_err)
        return "unreadable", {}, str(err)
    if isinstance(doc, dict):
        return "json object", _leaves(doc), ""
    if isinstance(doc, list) and doc and all(isinstance(d, dict) for d in doc):
        return "json batch", _leaves(doc[0]), ""
    if isinstance(doc, (bool, int, float, str)):
        return "bare value", {"value": _kind(doc)}, ""
    return "unreadable", {}, "a JSON value no reading can be taken from"


def _kind(v: Any) -> str:
    return "bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else "string"


def _leaves(doc: dict[str, Any], *, flat: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    stack: list[tuple[str, Any]] = [(k, v) for k, v in reversed(list(doc.items()))]
    while stack and len(out) < _MAX_FIELDS:
        path, v = stack.pop()
        if isinstance(v, dict) and not flat:
            stack.extend((f"{path}.{k}", c) for k, c in reversed(list(v.items())))
        elif isinstance(v, (bool, int, float, str)) and _is_path(path):
            out[path] = _kind(v)
    return out


def _is_path(path: str) -> bool:
    return all(p and not p[0].isspace() for p in path.split(".")) and not any(c in path for c in "\0\n")


def discover(conn: MqttConnection, *, seconds: float, max_messages: int | None = None,
             max_topics: int = 1000, on_subscribed: Callable[[], None] | None = None) -> Discovery:
    """Listen on `conn.topic` for `seconds` (or until `max_messages`); blocking. `on_subscribed`
    is called once the broker confirmed the subscription (from here on nothing is missed)."""
    import paho.mqtt.client as mqtt

    from connectors.mqtt.security import credentials, tls_context

    found = Discovery(broker=conn.broker_url, seconds=seconds,
                      sparkplug=SparkplugSurvey(max_devices=max_topics))
    lock, done, subscribed = threading.Lock(), threading.Event(), threading.Event()
    seen = 0

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        nonlocal seen
        with lock:
            seen += 1
            if max_messages is not None and seen >= max_messages:
                done.set()
            # Every Sparkplug message counts (births carry the aliases later data uses).
            spb = found.sparkplug.add(msg.topic, msg.payload) if msg.topic.startswith(SPARKPLUG_PREFIX) else None
            t = found.topics.get(msg.topic)
            if t is None:
                if len(found.topics) >= max_topics:
                    found.untracked_messages += 1
                    return
                t = found.topics[msg.topic] = TopicSeen(msg.topic)
                t.shape, t.fields, t.problem = spb or shape_of(msg.topic, msg.payload)
            t.messages += 1
            t.bytes += len(msg.payload)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
    creds = credentials(conn)
    if creds.username is not None:
        client.username_pw_set(creds.username, creds.password)
    if conn.tls:
        client.tls_set_context(tls_context(conn))
    client.on_message = on_message
    refused: list[str] = []

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            subscribed.set()
        else:
            c.subscribe(conn.topic, qos=0)

    def on_subscribe(*args: Any) -> None:
        subscribed.set()
        if on_subscribed is not None:
            on_subscribed()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    try:
        client.connect(conn.host, conn.port, conn.keepalive_s)
    except OSError as err:
        raise SourceError(f"{found.broker}: cannot connect: {err}") from None
    client.loop_start()
    try:
        if not subscribed.wait(conn.timeout_s):
            raise SourceError(f"{found.broker}: no subscription to {conn.topic} within {conn.timeout_s}s "
                              "(refused credentials or certificate?)")
        if refused:
            raise SourceError(f"{found.broker}: broker refused: {refused[0]}")
        started = time.monotonic()
        done.wait(seconds)
        found.seconds = max(time.monotonic() - started, 1e-3)
    finally:
        client.disconnect()
        client.loop_stop()
    return found


def suggested_devices(found: Discovery, conn: MqttConnection) -> list[dict[str, Any]]:
    """One device block per readable topic (unreadable ones are left out) and one per Sparkplug
    device whose metrics are known (its topics are not devices of their own)."""
    devices: list[dict[str, Any]] = []
    ids: set[str] = set()
    base = {k: v for k, v in conn.model_dump(exclude_unset=True).items() if k not in ("topic",)}
    for t in sorted(found.topics.values(), key=lambda t: t.topic):
        if not t.fields or "+" in t.topic or "#" in t.topic or t.topic.startswith(SPARKPLUG_PREFIX):
            continue
        dev_id = unique_name(_NON_ID.sub("-", t.topic).strip("-._")[:60] or "device", ids)
        ts = next((p for p in t.fields if p in TIMESTAMP_NAMES), None)
        names: set[str] = set()
        # The last segment as the name: `data.power_kw` suggests the role power_kw as it is.
        signals = [{"name": unique_name(_NON_NAME.sub("_", path.rsplit(".", 1)[-1]).strip("_")[:60] or "field", names),
                    "address": path} for path in t.fields if path != ts]
        devices.append({"id": dev_id, "name": t.topic, "type": "mqtt",
                        "connection": {**base, "topic": t.topic, "timestamp_field": ts},
                        "signals": signals})
    for block in found.sparkplug.suggested_devices(base):
        devices.append({**block, "id": unique_name(block["id"], ids)})
    return devices


# --- the command ------------------------------------------------------------


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("mqtt", help="list topics, rates and payload shapes on a broker; suggest devices")
    p.add_argument("url", help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    p.add_argument("--topic", default="#", help="topic filter to listen on (default #)")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to listen (default 30)")
    p.add_argument("--max-messages", type=int, default=None, help="stop after this many messages")
    p.add_argument("-o", "--output", default=None, help="write suggested device YAML here")
    p.add_argument("--ca-file", default=None)
    p.add_argument("--cert-file", default=None)
    p.add_argument("--key-file", default=None)
    p.add_argument("--username", default=None)
    p.add_argument("--password-env", default=None, help="environment variable holding the password")
    p.add_argument("--password-file", default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    conn = connection_from_url(args.url, args.topic, ca_file=args.ca_file, cert_file=args.cert_file,
                               key_file=args.key_file, username=args.username, password_env=args.password_env,
                               password_file=args.password_file)
    found = discover(conn, seconds=args.seconds, max_messages=args.max_messages)
    print(found.table())
    if args.output:
        n = write_suggestions(found, conn, Path(args.output))
        print(f"{n} suggested devices written to {args.output}", file=sys.stderr)
    return 0


def write_suggestions(found: Discovery, conn: MqttConnection, path: Path) -> int:
    """The suggested devices as a config file's `devices:`; returns how many."""
    devices = suggested_devices(found, conn)
    path.write_text(yaml.safe_dump({"devices": devices}, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return len(devices)
