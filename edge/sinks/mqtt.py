"""The upstream MQTT sink: JSON to a central broker, QoS 1, optional TLS. The only module of the
sinks that imports paho-mqtt.

One message per device and kind within a batch, in outbox order, on `topic` (samples) or
`rollup_topic` (rollup minutes), formatted with {site}, {device}, {line}, {protocol}:

    {"site": "S", "device": "D", "line": "L", "protocol": "modbus",
     "samples": [{"signal": "power_kw", "ts_ns": 1700000000000000000, "value": 3.2, "quality": "good"}]}
    {"site": "S", "device": "D", ..., "rollups": [{"ts_ns": ..., "running_s": 42.0, ..., "samples": 61.0}]}

A batch counts as sent when the broker has acknowledged (PUBACK) every one of its messages; a
connection lost before that makes the whole batch RetryableSinkError and the forwarder sends it
again. Delivery is therefore at least once: a consumer keys points by device, signal (or rollup)
and ts_ns, which makes a repeated message harmless. NaN and infinity, which JSON cannot carry,
are sent as null.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as paho

from ..errors import ConfigError, RetryableSinkError
from ..model import Sample
from ..outbox import RollupMinute
from .base import Batch
from .config import MqttSinkConfig

log = logging.getLogger(__name__)


class MqttSink:
    def __init__(self, cfg: MqttSinkConfig) -> None:
        self.cfg = cfg
        self.name = cfg.sink_name
        self.max_batch = cfg.max_batch
        self._up = threading.Event()
        self._last_error = ""
        client_id = cfg.client_id or f"shangyun-{cfg.site or 'edge'}-{self.name}"
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=True)
        if cfg.username is not None:
            self._client.username_pw_set(
                cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        if cfg.tls:
            for key in ("ca_file", "cert_file", "key_file"):
                path = getattr(cfg, key)
                if path is not None and not os.path.isfile(path):
                    raise ConfigError(f"sinks[{self.name}].{key}: no such file: {path}")
            self._client.tls_set(ca_certs=cfg.ca_file, certfile=cfg.cert_file, keyfile=cfg.key_file,
                                 cert_reqs=ssl.CERT_REQUIRED)
            self._client.tls_insecure_set(cfg.tls_insecure)
        self._client.max_inflight_messages_set(200)
        self._client.reconnect_delay_set(min_delay=1, max_delay=int(max(1, cfg.retry_max_s)))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        self._client.loop_start()

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._last_error = f"connect refused: {reason}"
            self._up.clear()
        else:
            self._up.set()

    @property
    def last_error(self) -> str:
        return self._last_error

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        # A refused TCP connection or a failed TLS handshake (certificate not trusted...).
        self._last_error = "connect failed (unreachable, or TLS handshake refused)"
        self._up.clear()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._last_error = f"disconnected: {reason}"
        self._up.clear()

    async def send(self, batch: Batch) -> None:
        messages = self._messages(batch)
        await asyncio.to_thread(self._publish, messages)

    def _messages(self, batch: Batch) -> list[tuple[str, bytes]]:
        groups: dict[tuple[str, bool], list[dict[str, Any]]] = {}
        for item in batch.items:
            rollup = isinstance(item, RollupMinute)
            groups.setdefault((item.device_id, rollup), []).append(
                _rollup(item) if rollup else _sample(item))  # type: ignore[arg-type]
        out = []
        for (device_id, rollup), entries in groups.items():
            info = batch.device(device_id)
            names = {"site": self.cfg.site, "device": device_id, "line": info.line,
                     "protocol": info.protocol}
            topic = (self.cfg.rollup_topic if rollup else self.cfg.topic).format(**names)
            doc = {**names, ("rollups" if rollup else "samples"): entries}
            out.append((topic, json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()))
        return out

    def _publish(self, messages: list[tuple[str, bytes]]) -> None:
        if not self._up.is_set():
            raise RetryableSinkError(f"{self.name}: not connected to {self.cfg.host}:{self.cfg.port}"
                                     f"{': ' + self._last_error if self._last_error else ''}")
        infos = []
        for topic, payload in messages:
            info = self._client.publish(topic, payload, qos=1)
            if info.rc != paho.MQTT_ERR_SUCCESS and info.rc != paho.MQTT_ERR_QUEUE_SIZE:
                raise RetryableSinkError(f"{self.name}: publish failed: {paho.error_string(info.rc)}")
            infos.append(info)
        deadline = time.monotonic() + self.cfg.ack_timeout_s
        for info in infos:
            while not info.is_published():
                if not self._up.is_set():
                    raise RetryableSinkError(f"{self.name}: connection lost before PUBACK")
                if time.monotonic() > deadline:
                    raise RetryableSinkError(f"{self.name}: no PUBACK within {self.cfg.ack_timeout_s} s")
                info.wait_for_publish(timeout=0.1)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _num(v: float) -> float | None:
    return None if math.isnan(v) or math.isinf(v) else v


def _sample(s: Sample) -> dict[str, Any]:
    v = s.value
    value = _num(v) if isinstance(v, float) else v
    return {"signal": s.signal, "ts_ns": s.ts_ns, "value": value, "quality": s.quality.name.lower()}


def _rollup(r: RollupMinute) -> dict[str, Any]:
    return {"ts_ns": r.ts_ns, **{k: _num(v) for k, v in r.fields.items()}}
