"""A gateway in miniature for the MQTT tests: one MqttSource under a DeviceSupervisor, a Pipeline
and a real Store, in this process (`running(...)`) or in its own (`python -m
tests.connectors.mqtt_rig ...`, which a test can kill with SIGKILL). The sink can be made slow
(a stall before its first write, then seconds per batch) to play a store that cannot keep up.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

from connectors.mqtt.source import MqttSource
from connectors.supervisor import DeviceSupervisor, stop_all
from edge.model import DeviceSpec, IdentityEvidence, Sample
from edge.pipeline import Pipeline
from edge.store import Store
from edge.store_sink import StoreSink
from tests.connectors.devices import device

TOPIC = "rig/m1/telemetry"
DEVICE_ID = "rig-1"
SIGNALS = [{"name": "count_total", "address": "n"}, {"name": "label", "address": "label"}]
ROOT = Path(__file__).resolve().parents[2]


def rig_device(port: int, **connection: Any) -> DeviceSpec:
    return device("mqtt", {"host": "127.0.0.1", "port": port, "topic": TOPIC, "identity_wait_s": 0,
                           "timeout_s": 3.0, **connection}, SIGNALS, device_id=DEVICE_ID)


class SlowSink(StoreSink):
    def __init__(self, store: Store, delay_s: float, stall_s: float = 0.0) -> None:
        super().__init__(store)
        self.delay_s = delay_s
        self.stall_s = stall_s

    async def write(self, batch: Sequence[Sample]) -> None:
        stall, self.stall_s = self.stall_s, 0.0
        if stall or self.delay_s:
            await asyncio.sleep(stall or self.delay_s)
        await super().write(batch)


class Recorder:
    """The supervisor's observer: remembers links going down, and writes them to the store so a
    test can read them from another process."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.online = 0
        self.offline: list[str] = []

    def on_online(self, device_id: str, identity: IdentityEvidence, ts_ns: int) -> None:
        self.online += 1
        self.store.add_event("rig_online", ts_ns, device_id)

    def on_offline(self, device_id: str, error: str, ts_ns: int) -> None:
        self.offline.append(error)
        self.store.add_event("rig_offline", ts_ns, device_id, {"error": error})

    def on_event(self, device_id: str, kind: str, data: dict[str, Any], ts_ns: int) -> None:
        self.store.add_event(kind, ts_ns, device_id, data)


@contextlib.asynccontextmanager
async def running(spec: DeviceSpec, store: Store, *, sink_delay_s: float = 0.0, sink_stall_s: float = 0.0,
                  batch_size: int = 500, queue_size: int = 10_000,
                  ) -> AsyncIterator[tuple[DeviceSupervisor, Recorder]]:
    store.upsert_device(spec)
    pipeline = Pipeline([SlowSink(store, sink_delay_s, sink_stall_s)], batch_size=batch_size, queue_size=queue_size,
                        flush_interval_s=0.05)
    await pipeline.start()
    recorder = Recorder(store)
    sup = DeviceSupervisor(MqttSource(spec), pipeline.put_many, recorder,
                           backoff_initial_s=0.2, backoff_max_s=1.0)
    task = asyncio.create_task(sup.run())
    try:
        yield sup, recorder
    finally:
        await stop_all({sup: task})
        await pipeline.stop(timeout_s=5)


def spawn(port: int, db: Path, connection: dict[str, Any], *, sink_delay_s: float = 0.0,
          sink_stall_s: float = 0.0, batch_size: int = 500, queue_size: int = 10_000) -> subprocess.Popen[bytes]:
    """The rig in its own process, until it is killed."""
    args = [sys.executable, "-m", "tests.connectors.mqtt_rig", "--port", str(port), "--db", str(db),
            "--connection", json.dumps(connection), "--sink-delay", str(sink_delay_s),
            "--sink-stall", str(sink_stall_s),
            "--batch-size", str(batch_size), "--queue-size", str(queue_size)]
    return subprocess.Popen(args, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                            stdin=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--connection", default="{}")
    ap.add_argument("--sink-delay", type=float, default=0.0)
    ap.add_argument("--sink-stall", type=float, default=0.0)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--queue-size", type=int, default=10_000)
    args = ap.parse_args(argv)

    async def forever() -> None:
        store = Store.open(args.db)
        spec = rig_device(args.port, **json.loads(args.connection))
        async with running(spec, store, sink_delay_s=args.sink_delay, sink_stall_s=args.sink_stall,
                           batch_size=args.batch_size,
                           queue_size=args.queue_size):
            await asyncio.Event().wait()

    asyncio.run(forever())


if __name__ == "__main__":
    main()
