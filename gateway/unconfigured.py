"""Devices seen on an MQTT topic template but configured nowhere, as `shangyun status` and the API
list them: from the store's `unconfigured_device` events (connectors/mqtt/shared.py reports each
id once per gateway run), newest per id, without the ids configured since."""
from __future__ import annotations

from typing import Any

from edge.store import Store

UNCONFIGURED_DEVICE = "unconfigured_device"   # the event kind (connectors.mqtt.shared)
MAX_LISTED = 1000


def unconfigured_devices(store: Store) -> list[dict[str, Any]]:
    """One entry per id: device_id, connection, topic, fields, suggestion (YAML), first_seen_ns."""
    configured = {d.id for d in store.devices()}
    newest: dict[str, dict[str, Any]] = {}
    for event in store.events(kind=UNCONFIGURED_DEVICE, limit=MAX_LISTED, newest_first=True):
        device_id = str(event.data.get("device_id", ""))
        if device_id and device_id not in configured and device_id not in newest:
            newest[device_id] = {**event.data, "reported_ns": event.ts_ns}
    return sorted(newest.values(), key=lambda d: d["device_id"])


def render_unconfigured(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["", f"{len(rows)} device(s) publishing on a topic template but not configured:"]
    for r in rows:
        lines.append(f"  {r['device_id']:<14} on {r.get('topic', '?')} (connection {r.get('connection', '?')})")
    lines.append("  (suggested YAML: shangyun status --json, or GET /api/unconfigured)")
    return lines
