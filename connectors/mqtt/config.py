"""MQTT settings and JSON field paths (validation only, no I/O)."""
from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

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

    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    topic: str = Field(min_length=1, description="telemetry topic (wildcards allowed)")
    identity_topic: str | None = Field(default=None, description="topic of the retained birth message")
    qos: int = Field(default=1, ge=0, le=2)
    client_id: str | None = Field(default=None, description="default: shangyun-<device id>")
    username: str | None = None
    password: str | None = None
    timestamp_field: str | None = Field(default="ts", description="payload field with the time; null: receive time")
    keepalive_s: int = Field(default=30, ge=5, le=65535)
    timeout_s: float = Field(default=5.0, gt=0, description="connect / subscribe timeout")
    identity_wait_s: float = Field(default=2.0, ge=0, description="how long to wait for the birth message")
    # A persistent session (with the stable default client id) is what lets a gateway restart
    # lose nothing: the broker queues QoS 1 telemetry until we are back.
    clean_session: bool = Field(
        default=False, description="false: the broker keeps our QoS 1 messages while we are away")
    queue_size: int = Field(default=1000, ge=1, description="messages buffered before the broker is slowed down")

    @field_validator("timestamp_field")
    @classmethod
    def _ts_path(cls, v: str | None) -> str | None:
        if v:
            split_path(v)
        return v or None
