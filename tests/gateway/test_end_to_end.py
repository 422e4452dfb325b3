"""The gateway with real servers on loopback: simulated machines over OPC UA, Modbus and MQTT,
through their connectors and the pipeline into the store; devices that are down at start, go
away and come back; malformed MQTT payloads.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest

from edge.model import Quality
from edge.store import Store
from gateway.config import load_config
from gateway.onboarding import config_from_manifest, dump_config
from gateway.runner import Gateway
from simulator.broker import MosquittoBroker
from simulator.factory import Factory
from simulator.machine import make_specs
from simulator.ports import free_port

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0


@pytest.fixture
def broker():
    with MosquittoBroker() as b:
        yield b


async def wait_for(predicate, what: str, timeout_s: float = DEADLINE_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def write_config(tmp_path: Path, manifest: dict, extra_devices: list[dict] = ()) -> Path:
    cfg = config_from_manifest(manifest, store_path=str(tmp_path / "gw.db"), rollup_interval_s=5)
    cfg["devices"].extend(extra_devices)
    path = tmp_path / "gateway.yaml"
    path.write_text(dump_config(cfg), encoding="utf-8")
    return path


def samples_by_device(store: Store, ids) -> dict[str, int]:
    return {i: store.sample_count(device_id=i) for i in ids}


async def test_every_protocol_flows_into_the_store_and_survives_outages(tmp_path, broker):
    specs = make_specs(6, seed=7)
    factory = Factory(specs, broker=(broker.host, broker.port))
    await factory.start()
    # A device nobody answers for: the gateway must run anyway and show it offline.
    ghost = {"id": "ghost", "type": "modbus", "profile": "sim-modbus",
             "connection": {"host": "127.0.0.1", "port": free_port(), "timeout_s": 0.5}}
    config = load_config(write_config(tmp_path, factory.manifest(), [ghost]))
    gateway = Gateway(config)
    store = gateway.store
    ids = [s.id for s in specs]
    await gateway.start()
    try:
        await wait_for(lambda: all(n > 20 for n in samples_by_device(store, ids).values()),
                       "every simulated machine to deliver samples")
        protocols = {d.id: d.protocol for d in store.devices()}
        assert {protocols[i] for i in ids} == {"opcua", "modbus", "mqtt"}
        for rec in store.devices():
            if rec.id == "ghost":
                assert not rec.online and rec.last_error
                continue
            assert rec.online, rec.id
            assert rec.identity is not None and rec.identity.fingerprint(), rec.id
        # Values arrive converted: states are State names, counters numbers.
        modbus_id = next(s.id for s in specs if s.protocol == "modbus")
        states = store.samples(modbus_id, "state")
        assert states and all(s.value in {"running", "idle", "stopped", "fault", "setup",
                                          "planned_stop"} for s in states
                              if s.quality == Quality.GOOD)

        # The Modbus machine goes away: offline, BAD samples, then back online.
        await factory.stop_machine(modbus_id)
        await wait_for(lambda: not store.device(modbus_id).online, "the machine to show offline")
        # The offline status is written at once, the BAD marks go through the pipeline: wait.
        await wait_for(lambda: any(s.quality == Quality.BAD for s in store.samples(modbus_id, "state")),
                       "BAD samples marking the outage")
        before = store.sample_count(device_id=modbus_id)
        await factory.start_machine(modbus_id)
        await wait_for(lambda: store.device(modbus_id).online, "the machine to come back",
                       timeout_s=90)
        await wait_for(lambda: store.sample_count(device_id=modbus_id) > before + 10,
                       "samples after the reconnect")
        kinds = [e.kind for e in store.events(device_id=modbus_id, limit=1000)]
        assert "offline" in kinds and kinds.count("online") >= 2
    finally:
        await gateway.stop()
        await factory.stop()
    # Stopping rolls up what was received: today's record exists for every machine.
    check = Store.open(config.store_path, readonly=True)
    try:
        days = {(dev, day) for dev, day, _ in check.rollup_days(device_ids=ids)}
        assert {dev for dev, _ in days} == set(ids)
        assert not check.device(ids[0]).online  # a clean stop marks devices offline
    finally:
        check.close()


async def test_malformed_mqtt_payload_is_counted_and_the_gateway_goes_on(tmp_path, broker):
    specs = [s for s in make_specs(3, seed=3) if s.protocol == "mqtt"]
    factory = Factory(specs, broker=(broker.host, broker.port))
    await factory.start()
    config = load_config(write_config(tmp_path, factory.manifest()))
    gateway = Gateway(config)
    store = gateway.store
    dev = specs[0].id
    topic = f"shangyun/sim/{dev}/telemetry"
    await gateway.start()
    try:
        await wait_for(lambda: store.sample_count(device_id=dev) > 5, "first MQTT samples")
        for payload in (b"{not json", b'{"ts": "yesterday-ish", "power_kw": "lots"}', b"\xff\xfe"):
            await asyncio.to_thread(mqtt_publish.single, topic, payload, qos=1,
                                    hostname=broker.host, port=broker.port)
        await wait_for(lambda: any(e.kind == "payload_error"
                                   for e in store.events(device_id=dev, limit=1000)),
                       "a payload_error event")
        after = store.sample_count(device_id=dev)
        await wait_for(lambda: store.sample_count(device_id=dev) > after + 5,
                       "samples to keep flowing after the bad payloads")
        assert store.device(dev).online
    finally:
        await gateway.stop()
        await factory.stop()


def test_status_command_reads_a_store_while_it_is_written(tmp_path, broker, capsys):
    from gateway.cli import main

    async def run() -> None:
        specs = make_specs(3, seed=11)
        factory = Factory(specs, broker=(broker.host, broker.port))
        await factory.start()
        config = load_config(write_config(tmp_path, factory.manifest()))
        gateway = Gateway(config)
        await gateway.start()
        try:
            await wait_for(lambda: all(gateway.store.sample_count(device_id=s.id) > 5
                                       for s in specs), "samples from all three")
            # Another reader, as `shangyun status` in a second terminal would be.
            assert await asyncio.to_thread(main, ["status", "-c", config.path, "--json"]) == 0
        finally:
            await gateway.stop()
            await factory.stop()

    asyncio.run(run())
    out = json.loads(capsys.readouterr().out)
    assert out["total"] == 3 and out["online"] == 3
    assert {d["protocol"] for d in out["devices"]} == {"opcua", "modbus", "mqtt"}
    assert all(d["samples_per_s"] > 0 for d in out["devices"])


async def test_mqtt_telemetry_published_while_the_gateway_is_down_is_not_lost(tmp_path, broker):
    specs = [s for s in make_specs(3, seed=21) if s.protocol == "mqtt"]
    dev = specs[0].id
    factory = Factory(specs, broker=(broker.host, broker.port))
    await factory.start()
    config = load_config(write_config(tmp_path, factory.manifest()))
    try:
        gateway = Gateway(config)
        await gateway.start()
        await wait_for(lambda: gateway.store.sample_count(device_id=dev) > 5, "first samples")
        await gateway.stop()   # the process goes away; the machine keeps publishing
        down_from = time.time_ns()
        await asyncio.sleep(4)
        down_to = time.time_ns()
        gateway = Gateway(config)
        await gateway.start()
        store = gateway.store
        # Everything the machine published during the outage arrives with its own timestamps.
        await wait_for(lambda: len({s.ts_ns for s in store.samples(dev, "power_kw",
                                                                    start_ns=down_from,
                                                                    end_ns=down_to)}) >= 3,
                       "telemetry from the outage, delivered from the broker's queue")
        await gateway.stop()
    finally:
        await factory.stop()
