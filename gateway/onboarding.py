"""Onboarding from a simulator manifest: the factory says what it started, we write the gateway
config an engineer would have written by hand (one device block per machine, from templates).
"""
from __future__ import annotations

from typing import Any

import yaml

PROFILE_BY_PROTOCOL = {"opcua": "sim-opcua", "modbus": "sim-modbus", "mqtt": "sim-mqtt"}


def device_block(machine: dict[str, Any], broker: dict[str, Any] | None) -> dict[str, Any]:
    protocol = machine["protocol"]
    block: dict[str, Any] = {
        "id": machine["id"],
        "name": machine.get("name") or machine["id"],
        "type": protocol,
        "profile": PROFILE_BY_PROTOCOL[protocol],
        "line": machine.get("line", ""),
    }
    if machine.get("ideal_cycle_s"):
        block["ideal_cycle_s"] = float(machine["ideal_cycle_s"])
    # Identity evidence is read where each machine keeps its serial (simulator/ADDRESSES.md).
    if protocol == "opcua":
        block["connection"] = {"endpoint": machine["endpoint"],
                               "serial_node": f"nsu=urn:shangyun:sim;s={machine['id']}.SerialNumber"}
    elif protocol == "modbus":
        block["connection"] = {"host": machine["host"], "port": int(machine["port"]),
                               "device_id": int(machine.get("device_id", 1)),
                               "poll_interval_s": 1.0, "serial_object": 0x80}
    elif protocol == "mqtt":
        if not broker:
            raise ValueError(f"machine {machine['id']} speaks MQTT but the manifest has no broker")
        prefix = machine["topic_prefix"]
        block["connection"] = {"host": broker["host"], "port": int(broker["port"]),
                               "topic": f"{prefix}/telemetry",
                               "identity_topic": f"{prefix}/identity"}
    else:
        raise ValueError(f"machine {machine['id']}: unknown protocol {protocol!r}")
    return block


def config_from_manifest(manifest: dict[str, Any], *, store_path: str,
                         rollup_interval_s: float = 30.0) -> dict[str, Any]:
    broker = manifest.get("broker")
    return {
        "gateway": {
            "name": "demo",
            "store": {"path": store_path},
            "rollup_interval_s": rollup_interval_s,
        },
        "devices": [device_block(m, broker) for m in manifest["machines"]],
    }


def dump_config(config: dict[str, Any]) -> str:
    header = ("# Written by `shangyun demo` from the virtual factory's manifest.\n"
              "# Edit and run it with: shangyun run -c THIS_FILE\n")
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)
