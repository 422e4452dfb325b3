"""Protocol name -> Connector. The same name is the config `type:`, the package, the logger
(`shangyun.connectors.<name>`) and the CLI word (`shangyun discover modbus`).

Config models are imported eagerly (pydantic only); a protocol library is imported only when a
source of that protocol is made.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from pydantic import BaseModel

from connectors.base import Connector, DeviceProfile, Source
from connectors.modbus.config import ModbusAddress, ModbusConnection
from connectors.mqtt.config import FieldPath, MqttConnection
from connectors.opcua.config import NodeAddress, OpcUaConnection
from edge.errors import ConfigError
from edge.model import DeviceSpec


@dataclass(frozen=True)
class ProtocolConnector:
    name: str
    connection_model: type[BaseModel]
    address_model: type[BaseModel] | None
    source_path: str  # "module:Class", imported on first use
    # A module with names() and device_profile(name) (connectors/<p>/profiles/), or None.
    profiles_path: str | None = None

    def make_source(self, device: DeviceSpec) -> Source:
        """A Source for `device`; ConfigError when its connection or addresses are invalid."""
        if device.protocol != self.name:
            raise ConfigError(f"device {device.id}: protocol {device.protocol!r} given to the {self.name} connector")
        module, cls = self.source_path.split(":")
        return getattr(importlib.import_module(module), cls)(device)

    def profile_names(self) -> list[str]:
        return importlib.import_module(self.profiles_path).names() if self.profiles_path else []

    def profile(self, name: str) -> DeviceProfile | None:
        """The profile of that name this connector ships; None when it has none by that name."""
        if name not in self.profile_names():
            return None
        return importlib.import_module(self.profiles_path or "").device_profile(name)


_CONNECTORS: dict[str, ProtocolConnector] = {
    c.name: c
    for c in (
        ProtocolConnector("opcua", OpcUaConnection, NodeAddress, "connectors.opcua.source:OpcUaSource"),
        ProtocolConnector("modbus", ModbusConnection, ModbusAddress, "connectors.modbus.source:ModbusSource",
                          "connectors.modbus.profiles"),
        ProtocolConnector("mqtt", MqttConnection, FieldPath, "connectors.mqtt.source:MqttSource"),
    )
}


def names() -> list[str]:
    return sorted(_CONNECTORS)


def get(name: str) -> Connector:
    try:
        return _CONNECTORS[name]
    except KeyError:
        raise ConfigError(f"unknown connector type {name!r}; valid: {', '.join(names())}") from None


def make_source(device: DeviceSpec) -> Source:
    """Shortcut: the source for a device, by its protocol."""
    return get(device.protocol).make_source(device)
