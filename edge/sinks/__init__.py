"""Upstream sinks, plugins shaped like the connectors: a type name -> (config model, the module
that imports the client library). Config models are pydantic only; the client library is
imported when a sink of that type is made.

    cfg = edge.sinks.parse({"type": "influxdb", "url": ..., "bucket": ..., "token": "${INFLUX_TOKEN}"})
    sink = edge.sinks.make_sink(cfg)          # or straight from the mapping
    await edge.forwarder.Forwarder(store, sink, cfg).run(stop)

Each type has a `sample.yaml` next to its module (tests load and validate it).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from pydantic import TypeAdapter, ValidationError

from ..errors import ConfigError
from .base import Batch, DeviceInfo, Sink
from .config import InfluxDBConfig, MqttSinkConfig, OutboxConfig, SinkConfig

__all__ = ["Batch", "DeviceInfo", "Sink", "SinkConfig", "InfluxDBConfig", "MqttSinkConfig", "OutboxConfig",
           "SinkType", "names", "get", "parse", "make_sink", "sample_path"]


@dataclass(frozen=True)
class SinkType:
    name: str
    config_model: type[SinkConfig]
    sink_path: str              # "module:Class", imported on first use

    def make(self, cfg: SinkConfig) -> Sink:
        """The sink; ConfigError when its settings cannot be used (a missing CA file...)."""
        module, cls = self.sink_path.split(":")
        factory = getattr(importlib.import_module(module), cls)
        try:
            return factory(cfg)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"sinks[{cfg.sink_name}]: {type(exc).__name__}: {exc}") from None


_TYPES: dict[str, SinkType] = {t.name: t for t in (
    SinkType("influxdb", InfluxDBConfig, "edge.sinks.influxdb:InfluxDBSink"),
    SinkType("mqtt", MqttSinkConfig, "edge.sinks.mqtt:MqttSink"),
)}


def names() -> list[str]:
    return sorted(_TYPES)


def get(name: str) -> SinkType:
    try:
        return _TYPES[name]
    except KeyError:
        raise ConfigError(f"unknown sink type {name!r}; valid: {', '.join(names())}") from None


def parse(block: Mapping) -> SinkConfig:
    """Validate one `sinks:` entry. ConfigError (without a path: the caller adds file and line)
    naming the field and what is wrong; a secret's value is never part of the message."""
    if not isinstance(block, Mapping):
        raise ConfigError(f"a sink must be a mapping with a type, got {type(block).__name__}")
    kind = get(str(block.get("type", "")))
    try:
        return TypeAdapter(kind.config_model).validate_python(dict(block))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "sink"
        raise ConfigError(f"sinks[{kind.name}].{where}: {first['msg']}") from None


def make_sink(cfg: SinkConfig | Mapping) -> Sink:
    """A sink from its config (a validated model or a raw `sinks:` entry)."""
    model = cfg if isinstance(cfg, SinkConfig) else parse(cfg)
    return get(str(getattr(model, "type"))).make(model)


def sample_path(name: str) -> Path:
    return Path(__file__).parent / f"{get(name).name}.sample.yaml"
