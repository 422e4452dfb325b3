"""Turning a DeviceSpec's loosely typed parts back into a connector's own config models.

The gateway validates `connection` and each signal `address` when it loads the YAML, but a
source may also be built from a DeviceSpec that came from somewhere else (the device registry,
a test), so every source re-validates here and fails with a ConfigError naming the device.
"""
from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from edge.errors import ConfigError
from edge.model import DeviceSpec, SignalSpec

M = TypeVar("M", bound=BaseModel)


def _explain(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "value"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def as_model(model: type[M], raw: Any, *, context: str) -> M:
    """`raw` as an instance of `model` (instances pass through), or ConfigError naming `context`."""
    if isinstance(raw, model):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{context}: {_explain(err)}") from None


def connection_of(model: type[M], device: DeviceSpec) -> M:
    return as_model(model, dict(device.connection), context=f"device {device.id}: connection")


def address_of(model: type[M], device: DeviceSpec, signal: SignalSpec) -> M:
    return as_model(model, signal.address, context=f"device {device.id}: signal {signal.name}: address")
