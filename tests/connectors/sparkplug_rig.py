"""Test rig for the Sparkplug B route: Eclipse Tahu's encoder as the edge node (node, under
tests/peers/sparkplug), and a real paho connection to a real Mosquitto feeding the route, as the
shared connection (connectors/mqtt, branch mqtt-shared) does."""
from __future__ import annotations

import asyncio
import json
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import paho.mqtt.client as mqtt

from connectors.mqtt import routing
from edge.model import IdentityEvidence, Sample

PEER_DIR = Path(__file__).resolve().parents[1] / "peers" / "sparkplug"


async def run_edge_node(broker: Any, script: Mapping[str, Any], tmp_path: Path,
                        timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """Run the Tahu edge node with `script` (see tests/peers/sparkplug/edge_node.js); returns
    the commands it received, decoded by Tahu."""
    node = shutil.which("node")
    if node is None or not (PEER_DIR / "node_modules" / "sparkplug-payload").is_dir():
        raise RuntimeError(f"the sparkplug peer is not installed: run `make test-packages` "
                           f"(npm ci --prefix {PEER_DIR})")
    path = tmp_path / f"script-{id(script)}.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        node, str(PEER_DIR / "edge_node.js"), f"mqtt://{broker.host}:{broker.port}", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    if proc.returncode != 0:
        raise AssertionError(f"edge node exited {proc.returncode}: {err.decode()}")
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    return [x for x in lines if "topic" in x]


@dataclass
class Collected:
    samples: list[Sample] = field(default_factory=list)
    births: list[tuple[str, IdentityEvidence]] = field(default_factory=list)
    deaths: list[tuple[str, str]] = field(default_factory=list)
    rejects: list[routing.Reject] = field(default_factory=list)
    field_errors: list[tuple[str, str]] = field(default_factory=list)
    unconfigured: list[tuple[str, Mapping[str, str], str]] = field(default_factory=list)
    messages: int = 0


class Output:
    """A RouteOutput that keeps everything it is told."""

    def __init__(self, got: Collected):
        self.got = got

    def samples(self, device_id: str, samples: list[Sample]) -> None:
        self.got.samples.extend(samples)

    def birth(self, device_id: str, identity: IdentityEvidence) -> None:
        self.got.births.append((device_id, identity))

    def death(self, device_id: str, reason: str, ts_ns: int) -> None:
        self.got.deaths.append((device_id, reason))

    def reject(self, reject: routing.Reject) -> None:
        self.got.rejects.append(reject)

    def field_error(self, device_id: str, error: Exception, topic: str, payload: bytes) -> None:
        self.got.field_errors.append((device_id, str(error)))

    def unconfigured(self, device_id: str, topic: str, fields: Mapping[str, str], suggestion: str) -> None:
        self.got.unconfigured.append((device_id, fields, suggestion))


class Harness:
    """One paho client subscribed to the route's filters; messages are handed to the route on
    the event loop, in receive order; the route publishes through the same client."""

    def __init__(self, broker: Any, route: Any):
        self.broker, self.route = broker, route
        self.got = Collected()
        self._out = Output(self.got)
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="shangyun-sparkplug-test")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed = threading.Event()

    async def __aenter__(self) -> "Harness":
        self._loop = asyncio.get_running_loop()
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.connect(self.broker.host, self.broker.port)
        self._client.loop_start()
        self._client.subscribe([(f, 1) for f in self.route.filters])
        await asyncio.to_thread(self._subscribed.wait, 30)
        self.route.connected(self)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._handle, msg.topic, bytes(msg.payload))

    def _handle(self, topic: str, payload: bytes) -> None:
        self.got.messages += 1
        self.route.handle(topic, payload, 1_700_000_000_000_000_000, self._out)
