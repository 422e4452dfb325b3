"""Config models of the sinks (pydantic only: no client library is imported to validate a config).

String values may name environment variables, `${INFLUX_TOKEN}`, expanded when the config is
validated: a secret then never has to be written into gateway.yaml. An unset variable is an error
naming it. Tokens and passwords are SecretStr: they print as '**********' in reprs, errors and logs.
"""
from __future__ import annotations

import os
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..outbox import DEFAULT_MAX_SAMPLES

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: Any) -> Any:
    """`value` with every ${NAME} replaced from the environment (strings, nested lists/dicts)."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ValueError(f"environment variable {name} is not set (referenced as ${{{name}}})")
            return os.environ[name]
        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


class OutboxConfig(BaseModel):
    """The outbox's size bound (edge.outbox.configure): raw samples waiting for the slowest sink."""

    model_config = ConfigDict(extra="forbid")

    max_samples: int = Field(DEFAULT_MAX_SAMPLES, ge=1)


class SinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""                 # the outbox cursor's name; default: the type
    site: str = ""                 # the `site` tag / topic part: this factory
    max_batch: int = Field(5000, ge=1, le=100_000)
    retry_min_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(30.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _expand(cls, data: Any) -> Any:
        return expand_env(data)

    @property
    def sink_name(self) -> str:
        return self.name or str(getattr(self, "type"))


class InfluxDBConfig(SinkConfig):
    """InfluxDB 2.x / Cloud / 3.x (or anything speaking its v2 write API, e.g. VictoriaMetrics)."""

    type: Literal["influxdb"]
    url: str
    org: str = Field(min_length=1)        # InfluxDB 2.x/Cloud: the org; 3.x and VictoriaMetrics ignore it
    bucket: str = Field(min_length=1)
    token: SecretStr = SecretStr("")
    gzip: bool = True
    timeout_s: float = Field(10.0, gt=0)
    verify_tls: bool = True
    ca_file: str | None = None
    measurement: str = "shangyun"
    rollup_measurement: str = "shangyun_rollup"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname:
            raise ValueError(f"url must be http(s)://host[:port], got {v!r}")
        return v.rstrip("/")


class MqttSinkConfig(SinkConfig):
    """A central MQTT broker: JSON, QoS 1; a message is sent when its PUBACK arrives."""

    type: Literal["mqtt"]
    broker: str                    # mqtt://host:1883 or mqtts://host:8883
    topic: str = "shangyun/{site}/{device}"
    rollup_topic: str = "shangyun/{site}/{device}/rollup"
    client_id: str = ""
    username: str | None = None
    password: SecretStr | None = None
    ca_file: str | None = None     # mqtts: CA bundle (default: the system's)
    cert_file: str | None = None   # mqtts: client certificate
    key_file: str | None = None
    tls_insecure: bool = False     # mqtts: skip hostname verification (test rigs only)
    keepalive_s: int = Field(30, ge=5)
    ack_timeout_s: float = Field(30.0, gt=0)

    @field_validator("broker")
    @classmethod
    def _broker(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError(f"broker must be mqtt://host[:port] or mqtts://host[:port], got {v!r}")
        return v

    @field_validator("topic", "rollup_topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        try:
            v.format(site="s", device="d", line="l", protocol="p")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"topic may use {{site}}, {{device}}, {{line}}, {{protocol}}: {exc}") from None
        if "#" in v or "+" in v:
            raise ValueError("a topic to publish to cannot contain wildcards (+ or #)")
        return v

    @property
    def tls(self) -> bool:
        return urlsplit(self.broker).scheme in ("mqtts", "ssl")

    @property
    def host(self) -> str:
        return urlsplit(self.broker).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.broker).port or (8883 if self.tls else 1883)
