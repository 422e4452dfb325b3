"""DeviceSpecs as the gateway would build them (connection dicts, validated addresses)."""
from __future__ import annotations

from typing import Any

from connectors import registry
from edge.model import DeviceSpec, SignalSpec

SIM_STATES = {"1": "running", "2": "idle", "3": "stopped", "4": "fault", "5": "setup", "6": "planned_stop"}


def device(protocol: str, connection: dict[str, Any], signals: list[dict[str, Any]],
           device_id: str = "dev-1") -> DeviceSpec:
    """Validate like the gateway does: connection -> model_dump() dict, addresses -> model instances."""
    connector = registry.get(protocol)
    conn = connector.connection_model.model_validate(connection).model_dump()
    specs = []
    for s in signals:
        address = connector.address_model.model_validate(s["address"]) if connector.address_model else s["address"]
        specs.append(SignalSpec(s["name"], address=address, scale=s.get("scale", 1.0),
                                offset=s.get("offset", 0.0),
                                states={str(k): v for k, v in s.get("states", {}).items()}))
    return DeviceSpec(id=device_id, name=device_id, protocol=protocol, connection=conn, signals=tuple(specs))
