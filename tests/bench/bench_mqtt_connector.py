"""Benchmark: the MQTT connector alone, socket bytes -> Samples -> PUBACKs, no store. Prints JSON.

    .venv/bin/python tests/bench/bench_mqtt_connector.py [--messages 50000] [--devices 50] [--only PART]

What the gateway's MQTT side costs per message, apart from the pipeline and the store
(tests/bench/bench_mqtt.py measures the whole gateway). Two parts, each with its baseline in the
same run:

- `connection`: a real Mosquitto holds `--messages` QoS 1 messages (10-field JSON, the bench_mqtt
  payload) queued for the shared connection's persistent session; the connection then reconnects
  and takes them all, every device's stream consumed by a task that acknowledges each batch at
  once (as a commit would). CPU of this process from the reconnect until every PUBACK is
  written, per message. Its baseline is a bare paho client taking the same queue with an empty
  `on_message` (paho acknowledging by itself): what paho alone costs to read and acknowledge.
- `mapping`: `DeviceMapping.samples` on the same payloads, the compiled flat-JSON plan against
  the general decoder (`decode_payload`), CPU per message.

Broker and publishers run in other processes, so their CPU is not in these numbers. `--only
connection|paho|mapping` runs one part (to profile it with py-spy).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from tests.bench.bench_mqtt import FIELDS, TEMPLATE, config_yaml, payload

TOPIC = "bench/L{line}/m{dev:03d}/telemetry"


def queue_messages(host: str, port: int, devices: int, messages: int, tmp: str) -> int:
    """Publish `messages` (round-robin over the devices' topics) with mosquitto_pub, QoS 1, and
    wait until every publisher has its PUBACKs: the broker then holds them for offline sessions."""
    per = messages // devices
    now_us = time.time_ns() // 1000
    procs = []
    for d in range(devices):
        path = os.path.join(tmp, f"q-{d}.txt")
        with open(path, "wb") as f:
            f.writelines(payload(now_us + i, d * per + i) + b"\n" for i in range(per))
        with open(path, "rb") as stdin:
            procs.append(subprocess.Popen(
                ["mosquitto_pub", "-h", host, "-p", str(port), "-q", "1", "-M", "1000", "-l",
                 "-i", f"q-pub-{d}", "-t", TOPIC.format(line=d % 4, dev=d)], stdin=stdin))
    for p in procs:
        if p.wait(timeout=300) != 0:
            raise SystemExit(f"mosquitto_pub exited with {p.returncode}")
    return per * devices


async def connector_run(cfg_path: str, expected: int, *, prime: bool) -> dict[str, Any]:
    """One life of the shared connection: `prime` only subscribes (creating the session); else
    it takes `expected` queued messages and reports the CPU spent."""
    from connectors.mqtt.shared import SharedConnections
    from gateway.config import load_config

    loaded = load_config(cfg_path)
    conns = SharedConnections()
    sources = [conns.source(d) for d in loaded.devices]
    samples = 0

    async def consume(src: Any) -> None:
        nonlocal samples
        await src.connect()
        async for batch in src.samples():
            samples += len(batch)
            if batch.ack is not None:
                batch.ack()

    cpu0, t0 = time.process_time(), time.perf_counter()
    for s in sources:
        s.connection.start()
    conn = conns.connections[0]
    await conn.wait_up()
    tasks = [asyncio.create_task(consume(s)) for s in sources]
    deadline = time.monotonic() + 300
    while not prime and (conn.messages < expected or (conn.acks is not None and conn.acks.in_flight)):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {conn.messages} of {expected} messages arrived")
        await asyncio.sleep(0.01)
    # The last PUBACKs were queued to paho: give its thread the moment to send them.
    while conn._client is not None and conn._client.want_write():   # noqa: SLF001 - bench only
        await asyncio.sleep(0.001)
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await conns.close()
    return {"messages": conn.messages, "samples": samples, "drains": conn.drains, "elapsed_s": round(elapsed, 2),
            "cpu_us_per_message": round(cpu / max(1, conn.messages) * 1e6, 2)}


def paho_plain(host: str, port: int, client_id: str, expected: int, *, prime: bool) -> dict[str, Any]:
    """A bare paho client (MQTT 5, persistent session, auto-acknowledging, empty on_message)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    got = 0

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        nonlocal got
        got += 1

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0xFFFFFFFF
    props.ReceiveMaximum = 65535
    cpu0, t0 = time.process_time(), time.perf_counter()
    client.connect(host, port, clean_start=False, properties=props)
    client.loop_start()
    client.subscribe(TEMPLATE.replace("{line}", "+").replace("{device}", "+"), qos=1)
    deadline = time.monotonic() + 300
    while not prime and got < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"paho: only {got} of {expected} messages arrived")
        time.sleep(0.01)
    while client.want_write():
        time.sleep(0.001)
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return {"messages": got, "elapsed_s": round(elapsed, 2), "cpu_us_per_message": round(cpu / max(1, got) * 1e6, 2)}


def mapping_bench(cfg_path: str, n: int) -> dict[str, Any]:
    from connectors.mqtt.config import MqttConnection
    from connectors.mqtt.mapping import DeviceMapping
    from connectors.validation import connection_of
    from gateway.config import load_config

    spec = load_config(cfg_path).devices[0]
    cfg = connection_of(MqttConnection, spec)
    now_us = time.time_ns() // 1000
    payloads = [payload(now_us + i, i) for i in range(n)]

    def run(mapping: DeviceMapping) -> float:
        errors: list[Any] = []
        cpu0 = time.process_time()
        for p in payloads:
            mapping.samples(p, 0, lambda name, err: errors.append(err))
        cpu = time.process_time() - cpu0
        assert not errors, errors[:3]
        return round(cpu / n * 1e6, 2)

    general = DeviceMapping(spec, cfg)
    general.disable_fast_path()
    return {"messages": n, "fast_cpu_us_per_message": run(DeviceMapping(spec, cfg)),
            "general_cpu_us_per_message": run(general)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--only", choices=("connection", "paho", "mapping"), help="one part (to profile it)")
    args = ap.parse_args()
    from simulator.broker import MosquittoBroker

    out: dict[str, Any] = {"benchmark": "mqtt_connector", "devices": args.devices,
                           "fields_per_message": len(FIELDS), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp, MosquittoBroker() as broker:
        cfg = os.path.join(tmp, "bench.yaml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(config_yaml(os.path.join(tmp, "unused.db"), broker.host, broker.port, args.devices, "5"))
        parts = {args.only} if args.only else {"connection", "paho", "mapping"}
        if "connection" in parts:
            asyncio.run(connector_run(cfg, 0, prime=True))
        if "paho" in parts:
            paho_plain(broker.host, broker.port, "bench-plain", 0, prime=True)
        n = queue_messages(broker.host, broker.port, args.devices, args.messages, tmp)
        if "connection" in parts:
            out["connection"] = asyncio.run(connector_run(cfg, n, prime=False))
        if "paho" in parts:
            out["paho_plain_baseline"] = paho_plain(broker.host, broker.port, "bench-plain", n, prime=False)
        if "mapping" in parts:
            out["mapping"] = mapping_bench(cfg, min(n, 20_000))
    out["loadavg_1m"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))
    conn = out.get("connection")
    return 0 if conn is None or (conn["messages"] >= n and conn["samples"] == n * len(FIELDS)) else 1


if __name__ == "__main__":
    sys.exit(main())
