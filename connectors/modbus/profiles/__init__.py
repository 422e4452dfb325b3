"""Device profiles: register maps of known devices as data files (`<name>.yaml` beside this module).

A profile names the vendor manual its map comes from and says how much of it was verified; it
carries the meter's usual line settings, its serial-number registers (identity evidence), the
registers discovery reads to recognise it, and its signals. Loading validates every address with
the same models a device config uses, so a broken profile fails at load, naming the file.
"""
from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connectors.base import DeviceProfile
from connectors.modbus.config import ModbusAddress, ModbusConnection
from edge.errors import ConfigError


class ProfileSignal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    address: ModbusAddress
    scale: float = 1.0
    offset: float = 0.0
    states: dict[str, str] = Field(default_factory=dict)

    @field_validator("states", mode="before")
    @classmethod
    def _codes_as_text(cls, v: Any) -> Any:
        # YAML reads `1: running` with an int key; device configs match codes as text.
        return {str(k): s for k, s in v.items()} if isinstance(v, dict) else v


class Probe(BaseModel):
    """A register whose value, when in [min, max], is evidence the device is this model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: ModbusAddress
    min: float
    max: float


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = Field(min_length=1)
    vendor: str = Field(min_length=1)
    model: str = Field(min_length=1)
    manual: str = Field(min_length=1, description="the document the map comes from")
    verified: str = Field(min_length=1, description="what of the map was checked against it")
    connection: dict[str, Any] = Field(default_factory=dict, description="usual line settings")
    serial_registers: ModbusAddress | None = None
    identify: tuple[Probe, ...] = ()
    signals: tuple[ProfileSignal, ...]

    def connection_for(self, **settings: Any) -> ModbusConnection:
        """The profile's line settings overlaid with the device's own (host, serial, unit id...)."""
        merged = {**self.connection, **settings}
        if self.serial_registers is not None:
            merged.setdefault("serial_registers", self.serial_registers)
        try:
            return ModbusConnection.model_validate(merged)
        except ValidationError as err:
            raise ConfigError(f"profile {self.profile}: connection: {err.errors()[0]['msg']}") from None


def names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


@cache
def load(name: str) -> Profile:
    path = resources.files(__name__) / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown Modbus profile {name!r}; known: {', '.join(names())}")
    where = f"connectors/modbus/profiles/{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        profile = Profile.model_validate(data)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not YAML: {err}") from None
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"{where}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if profile.profile != name:
        raise ConfigError(f"{where}: says profile {profile.profile!r}, but the file is named {name!r}")
    return profile


def device_profile(name: str) -> DeviceProfile:
    """The profile as a device config uses it (`profile: eastron-sdm630`): its signals, and its
    serial-number registers as the connection's default, so identity evidence is read. Its line
    settings are not applied: a meter behind a serial server or DTU is reached over TCP, and the
    block says which transport it uses."""
    p = load(name)
    signals = tuple({"name": s.name, "address": s.address.model_dump(exclude_defaults=True), "scale": s.scale, "offset": s.offset, "states": dict(s.states)} for s in p.signals)
    connection: dict[str, Any] = {}
    if p.serial_registers is not None:
        connection["serial_registers"] = p.serial_registers.model_dump(exclude_defaults=True)
    return DeviceProfile(name, signals, connection, source=f"connectors/modbus/profiles/{name}.yaml")
