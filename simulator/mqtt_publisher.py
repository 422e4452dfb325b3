"""One paho-mqtt client per simulated machine: a retained identity message and JSON telemetry, as
ADDRESSES.md says. The only importer of paho in the simulator.

paho's network thread (loop_start) reconnects by itself when the broker goes away; every new
connection republishes the retained identity. Telemetry due while disconnected is dropped, as a
small device without a buffer would.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt

from .machine import Machine

log = logging.getLogger(__name__)

TS_FORMATS = ("epoch_s", "epoch_ms", "iso8601")
_CST = timezone(timedelta(hours=8))


def topic_prefix(machine_id: str) -> str:
    return f"shangyun/sim/{machine_id}"


def client_id(serial: str) -> str:
    return f"sim-{serial}"


def format_ts(ts: float, fmt: str) -> float | int | str:
    """The machine's own idea of a timestamp: epoch seconds, epoch milliseconds, or local ISO 8601."""
    if fmt == "epoch_s":
        return round(ts, 3)
    if fmt == "epoch_ms":
        return int(round(ts * 1000))
    if fmt == "iso8601":
        return datetime.fromtimestamp(ts, _CST).isoformat(timespec="milliseconds")
    raise ValueError(f"unknown ts format {fmt!r}; valid: {', '.join(TS_FORMATS)}")


def identity_payload(machine: Machine) -> dict:
    p = machine.profile
    return {
        "client_id": client_id(machine.spec.serial),
        "serial_number": machine.spec.serial,
        "vendor": p.vendor,
        "model": p.model,
        "firmware": p.firmware,
    }


def telemetry_payload(values: dict, ts: float, ts_format: str) -> dict:
    return {
        "ts": format_ts(ts, ts_format),
        "state": values["state"],
        "reason_code": values["reason_code"],
        "count_total": values["count_total"],
        "count_good": values["count_good"],
        "count_reject": values["count_reject"],
        "power_kw": values["power_kw"],
        "energy_kwh": values["energy_kwh"],
        "alarm": values["alarm"],
    }


class MqttMachinePublisher:
    """Publishes one machine to the broker at (host, port)."""

    def __init__(self, machine: Machine, *, broker: tuple[str, int], ts_format: str = "epoch_s",
                 interval_s: float = 1.0, keepalive_s: int = 15) -> None:
        if ts_format not in TS_FORMATS:
            raise ValueError(f"unknown ts format {ts_format!r}; valid: {', '.join(TS_FORMATS)}")
        self.machine = machine
        self.broker = broker
        self.ts_format = ts_format
        self.interval_s = interval_s
        self.keepalive_s = keepalive_s
        self.prefix = topic_prefix(machine.spec.id)
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._last_sent: float | None = None

    @property
    def running(self) -> bool:
        return self._client is not None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Begin connecting (in the background: the broker may not be up yet)."""
        if self._client is not None:
            return
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=client_id(self.machine.spec.serial), clean_session=True)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.connect_async(self.broker[0], self.broker[1], keepalive=self.keepalive_s)
        client.loop_start()
        self._client = client

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        self._connected.clear()
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)

    async def update(self, values: dict, ts: float) -> None:
        client = self._client
        if client is None or not self._connected.is_set():
            return
        if self._last_sent is not None and ts - self._last_sent < self.interval_s * 0.999:
            return
        self._last_sent = ts
        payload = json.dumps(telemetry_payload(values, ts, self.ts_format), separators=(",", ":"))
        client.publish(f"{self.prefix}/telemetry", payload, qos=1)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason_code: mqtt.ReasonCode, properties: object) -> None:
        if reason_code.is_failure:
            log.warning("%s: broker refused connection: %s", self.machine.spec.id, reason_code)
            return
        client.publish(f"{self.prefix}/identity", json.dumps(identity_payload(self.machine)),
                       qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason_code: mqtt.ReasonCode, properties: object) -> None:
        self._connected.clear()
