"""MQTT settings and JSON field paths (validation only, no I/O)."""
from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from connectors.mqtt.topics import TopicTemplate

_SEGMENT = re.compile(r"^[^.\s][^.]*$")


def split_path(path: str) -> tuple[str, ...]:
    """`data.power` -> ("data", "power"). A segment of digits indexes into a JSON array."""
    parts = tuple(path.strip().split("."))
    if not path.strip() or not all(_SEGMENT.match(p) for p in parts):
        raise ValueError(f"{path!r} is not a field path: expected names separated by dots, e.g. data.power_kw")
    return parts


class FieldPath(RootModel[str]):
    """A signal's address: the path of its field in the JSON payload."""

    @field_validator("root")
    @classmethod
    def _valid(cls, v: str) -> str:
        split_path(v)
        return v.strip()

    @property
    def parts(self) -> tuple[str, ...]:
        return split_path(self.root)


class MqttConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Relative paths in a gateway config are relative to the config file (gateway/config.py).
    file_fields: ClassVar[dict[str, str]] = {
        "password_file": "config", "ca_file": "config", "cert_file": "config", "key_file": "config"}

    # Set from `mqtt_brokers:` (gateway config) when the device names a shared connection.
    broker: str | None = Field(default=None, description="name of a shared connection in mqtt_brokers")
    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    topic: str = Field(min_length=1, description="telemetry topic (wildcards allowed) or topic template "
                                                 "binding fields: factory/{line}/{device}/telemetry")
    identity_topic: str | None = Field(default=None, description="topic of the retained birth message")
    protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT version: 5 (Receive Maximum, Maximum Packet Size) or 3.1.1")
    qos: int = Field(default=1, ge=0, le=2, description="2 is subscribed as 1 (see connectors/mqtt/source.py)")
    client_id: str | None = Field(default=None, description="default: shangyun-<device id>")
    username: str | None = None
    username_env: str | None = Field(default=None, description="environment variable holding the username")
    password: str | None = Field(default=None, description="prefer password_env or password_file")
    password_env: str | None = Field(default=None, description="environment variable holding the password")
    password_file: str | None = Field(
        default=None, description="file holding the password (read at each connect; a trailing newline is dropped)")
    tls: bool = Field(default=False, description="TLS to the broker; implied by ca_file or cert_file")
    ca_file: str | None = Field(default=None, description="PEM CA bundle the broker must chain to; "
                                                          "default with tls: the system's CAs")
    cert_file: str | None = Field(default=None, description="PEM client certificate (mutual TLS)")
    key_file: str | None = Field(default=None, description="PEM private key of cert_file (unencrypted)")
    payload_format: Literal["auto", "json", "kv", "number", "sparkplug"] = Field(
        default="auto", description="auto: JSON (object, batch array, bare value), else key=value text; "
                                    "sparkplug: Sparkplug B (connectors/mqtt/sparkplug/)")
    # Settings of the Sparkplug B route, validated by that route (connectors/mqtt/routing.py).
    sparkplug: dict[str, Any] | None = None
    timestamp_field: str | None = Field(default="ts", description="payload field with the time; null: receive time")
    keepalive_s: int = Field(default=30, ge=5, le=65535)
    timeout_s: float = Field(default=5.0, gt=0, description="connect / subscribe timeout")
    identity_wait_s: float = Field(default=2.0, ge=0, description="how long to wait for the birth message")
    # A persistent session (with the stable default client id) is what lets a gateway restart
    # lose nothing: the broker queues QoS 1 telemetry until we are back. MQTT 5: clean_start.
    clean_session: bool = Field(
        default=False, description="false: the broker keeps our QoS 1 messages while we are away")
    session_expiry_s: int = Field(
        default=0xFFFFFFFF, ge=0, le=0xFFFFFFFF,
        description="MQTT 5: how long the broker keeps the session offline (4294967295: forever, as 3.1.1)")
    # Messages are acknowledged only once stored, so this is how many the broker may have sent
    # us unacknowledged: the backpressure, held at the broker. MQTT 3.1.1 has no such property;
    # there the broker's own limit (Mosquitto: max_inflight_messages) plays this role.
    receive_maximum: int = Field(
        default=1000, ge=1, le=65535, description="MQTT 5: unacknowledged messages the broker may send us")
    max_payload_bytes: int = Field(default=256 * 1024, ge=1, description="larger messages are refused")
    # Off by default: Mosquitto 2.0.11 (Debian 11, Ubuntu 22.04) counts every message it drops
    # for being too large against Receive Maximum for as long as the connection lasts, so after
    # receive_maximum of them it silently stops sending to us (connectors/mqtt/source.py).
    send_maximum_packet_size: bool = Field(
        default=False, description="MQTT 5: ask the broker not to send messages over max_payload_bytes")
    max_string_chars: int = Field(default=256, ge=1, description="longer string values are a payload error")
    max_json_depth: int = Field(default=32, ge=1, description="deeper JSON nesting is a payload error")
    max_batch_readings: int = Field(
        default=1000, ge=1, description="a JSON batch (array) with more readings is a payload error")
    # Only on a shared connection, where the link being up says nothing about one device.
    stale_after_s: float | None = Field(
        default=120.0, gt=0, description="shared connection: a device is online while it has published within "
                                         "this many seconds (null: whenever the connection is up)")
    unmatched_warn_after: int = Field(
        default=100, ge=1,
        description="warn once about a signal whose path matched nothing in this many payloads")

    @property
    def shared(self) -> bool:
        """Whether this device rides on a shared broker connection (connectors/mqtt/shared.py)."""
        return self.broker is not None or "{" in self.topic or self.payload_format == "sparkplug"

    @model_validator(mode="after")
    def _security(self) -> "MqttConnection":
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file (the certificate it belongs to)")
        given = [n for n in ("password", "password_env", "password_file") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of {' / '.join(given)}, not several")
        if self.username is not None and self.username_env is not None:
            raise ValueError("give username or username_env, not both")
        if self.ca_file or self.cert_file:
            self.tls = True
        if self.tls and "port" not in self.model_fields_set:
            self.port = 8883    # the IANA port of MQTT over TLS
        return self

    @property
    def broker_url(self) -> str:
        """mqtt://HOST:PORT, or mqtts:// over TLS: how logs and identity evidence name the broker."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, v: Any) -> Any:
        # YAML reads `protocol: 5` as an int and `protocol: 3.1.1` as a string.
        return str(v).strip() if isinstance(v, (int, str)) and not isinstance(v, bool) else v

    @field_validator("timestamp_field")
    @classmethod
    def _ts_path(cls, v: str | None) -> str | None:
        if v:
            split_path(v)
        return v or None

    @field_validator("topic", "identity_topic")
    @classmethod
    def _topic_filter(cls, v: str | None) -> str | None:
        # Refused here, so `run` refuses it as `check` does: an invalid filter is a device that
        # could never subscribe, retrying forever.
        if v is not None:
            TopicTemplate.parse(v)   # ValueError with the reason; a plain filter is a template too
        return v


# What each device of a shared connection sets for itself; every other MqttConnection key belongs
# to the connection (`mqtt_brokers:` in the gateway config) and is the same for all its devices.
DEVICE_KEYS = frozenset({
    "broker", "topic", "identity_topic", "payload_format", "sparkplug", "timestamp_field",
    "max_string_chars", "max_json_depth", "max_batch_readings", "unmatched_warn_after",
    "identity_wait_s", "stale_after_s"})


class MqttBroker(BaseModel):
    """One entry of the gateway config's `mqtt_brokers:`: a connection configured once and
    shared by every device that names it (`connection: {broker: NAME, topic: ...}`)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")

    def connection_keys(self) -> dict[str, Any]:
        keys = dict(self.model_extra or {})
        misplaced = sorted(set(keys) & DEVICE_KEYS)
        if misplaced:
            raise ValueError(f"{misplaced} belong to each device's connection, not to the broker")
        unknown = sorted(set(keys) - set(MqttConnection.model_fields))
        if unknown:
            raise ValueError(f"unknown broker settings {unknown}")
        return keys


def with_broker(connection: dict[str, Any], brokers: dict[str, MqttBroker]) -> dict[str, Any]:
    """A device's connection block with its named broker's settings filled in (ValueError
    naming what is wrong: an unknown broker, a broker setting given on the device)."""
    name = connection.get("broker")
    if name is None:
        return connection
    if name not in brokers:
        known = ", ".join(sorted(brokers)) or "none: add an `mqtt_brokers:` section"
        raise ValueError(f"broker {name!r} is not in mqtt_brokers (known: {known})")
    own = sorted(set(connection) - DEVICE_KEYS)
    if own:
        raise ValueError(f"{own} are settings of the broker connection {name!r}: give them in "
                         "mqtt_brokers, once for every device on it")
    return {**brokers[name].connection_keys(), **connection}
