"""One device's poison value never stops another device's data, and a store that cannot be
written is reported (once, at WARNING, and by /healthz) while the data waits for it.

Real servers: the simulator's OPC UA, Modbus and MQTT machines through a real Mosquitto.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3

import httpx
import paho.mqtt.publish as mqtt_publish
import pytest

from asyncua import Server, ua

from gateway import api
from gateway.config import load_config
from gateway.runner import Gateway
from simulator.broker import MosquittoBroker
from simulator.factory import Factory
from simulator.machine import make_specs
from simulator.ports import free_port
from tests.gateway.test_end_to_end import wait_for, write_config

pytestmark = pytest.mark.integration

POISON = (
    b'{"count_total": 123456789012345678901234567890}',
    b'{"ts": "9999-12-31T23:59:59Z", "power_kw": 1.5}',
    b'{"ts": 99999999999999999999, "power_kw": 2.5}',
)


@pytest.fixture
async def plant(tmp_path):
    with MosquittoBroker() as broker:
        specs = make_specs(3, seed=3)          # one OPC UA, one Modbus, one MQTT machine
        assert {s.protocol for s in specs} == {"opcua", "modbus", "mqtt"}
        factory = Factory(specs, broker=(broker.host, broker.port))
        await factory.start()
        gateway = Gateway(load_config(write_config(tmp_path, factory.manifest())))
        try:
            yield broker, specs, gateway
        finally:
            await factory.stop()


async def test_poison_values_are_dead_lettered_and_every_device_keeps_being_stored(plant):
    broker, specs, gateway = plant
    store = gateway.store
    mqtt_dev = next(s.id for s in specs if s.protocol == "mqtt")
    await gateway.start()
    try:
        await wait_for(lambda: all(store.sample_count(device_id=s.id) > 5 for s in specs),
                       "samples from every machine")
        for payload in POISON:
            await asyncio.to_thread(mqtt_publish.single, f"shangyun/sim/{mqtt_dev}/telemetry",
                                    payload, qos=1, hostname=broker.host, port=broker.port)
        # The MQTT decoder refuses integers beyond 64 bits itself (a counted payload error);
        # whatever reaches the store unstorable is dead-lettered there (the OPC UA test below).
        await wait_for(lambda: sum(1 for e in store.events(device_id=mqtt_dev, kind="payload_error",
                                                           limit=1000)) >= 1, "the poison counted")
        before = {s.id: store.sample_count(device_id=s.id) for s in specs}
        await wait_for(lambda: all(store.sample_count(device_id=s.id) > before[s.id] + 3
                                   for s in specs), "every protocol still stored after the poison")
        assert gateway.health()["status"] == "ok"
    finally:
        await asyncio.wait_for(gateway.stop(), 90)     # a stop always completes


async def test_a_locked_store_is_reported_once_and_nothing_is_lost(plant, caplog):
    _, specs, gateway = plant
    gateway.health_stall_s = 1.0
    store = gateway.store
    app = api.create_app(gateway.config.store_path, health=gateway.health)
    await gateway.start()
    server = await api.serve(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{api.bound_port(server)}"
    blocker = None
    try:
        await wait_for(lambda: all(store.sample_count(device_id=s.id) > 5 for s in specs),
                       "samples from every machine")
        with caplog.at_level(logging.INFO, logger="edge.pipeline"):
            # Another process's write transaction holds the database: SQLite says "locked".
            blocker = sqlite3.connect(gateway.config.store_path, isolation_level=None, timeout=0)
            blocker.execute("BEGIN IMMEDIATE")
            async with httpx.AsyncClient(base_url=base) as client:
                async def unhealthy() -> bool:
                    r = await client.get("/healthz")
                    return r.status_code == 503 and r.json()["status"] == "unhealthy"
                deadline = asyncio.get_running_loop().time() + 60
                while not await unhealthy():
                    assert asyncio.get_running_loop().time() < deadline, "never unhealthy"
                    await asyncio.sleep(0.2)
                # Held past SQLite's busy timeout, the write fails and is retried.
                await wait_for(lambda: gateway.pipeline.stats().retries > 1, "a retried write")
                waiting = gateway.pipeline.stats()
                assert waiting.received > waiting.written + waiting.rejected
                blocker.execute("ROLLBACK")
                blocker.close()
                blocker = None
                await wait_for(lambda: gateway.pipeline.stats().written >= waiting.received,
                               "the held-back samples written")
                assert (await client.get("/healthz")).status_code == 200
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                    and "cannot write" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "lock" in warnings[0].getMessage()
        assert any("writes again" in r.getMessage() for r in caplog.records)
        assert gateway.pipeline.stats().rejected == 0
    finally:
        if blocker is not None:
            blocker.close()
        await api.stop(server)
        await gateway.stop()


async def test_an_opcua_uint64_beyond_int64_is_dead_lettered_and_its_neighbours_stored(tmp_path):
    """An OPC UA UInt64 of 2**63 + 5 (SQLite integers are signed 64-bit) is rejected alone; the
    same device's other signal and the next good value of the same signal are stored."""
    port = free_port()
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/poison")
    ns = await server.register_namespace("urn:shangyun:poison")
    obj = await server.nodes.objects.add_object(ns, "m1")
    big = await obj.add_variable(ua.NodeId("m1.Count", ns), "Count", ua.Variant(1, ua.VariantType.UInt64))
    power = await obj.add_variable(ua.NodeId("m1.Power", ns), "Power", ua.Variant(1.0, ua.VariantType.Double))
    await server.start()
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        f"gateway:\n  store: {{path: {tmp_path / 'gw.db'}}}\n"
        "devices:\n  - id: m1\n    type: opcua\n"
        f"    connection: {{endpoint: 'opc.tcp://127.0.0.1:{port}/poison', publishing_interval_ms: 50}}\n"
        "    signals:\n"
        "      - {name: count_total, address: 'nsu=urn:shangyun:poison;s=m1.Count'}\n"
        "      - {name: power_kw, address: 'nsu=urn:shangyun:poison;s=m1.Power'}\n",
        encoding="utf-8")
    gateway = Gateway(load_config(cfg))
    store = gateway.store
    await gateway.start()
    try:
        await wait_for(lambda: store.latest("m1", "count_total") is not None, "first count")
        await big.write_value(ua.Variant(2**63 + 5, ua.VariantType.UInt64))
        await wait_for(lambda: store.dead_letters(device_id="m1"), "the UInt64 dead-lettered")
        await big.write_value(ua.Variant(42, ua.VariantType.UInt64))
        await power.write_value(ua.Variant(7.5, ua.VariantType.Double))
        await wait_for(lambda: (c := store.latest("m1", "count_total")) is not None and c.value == 42,
                       "the next count stored")
        await wait_for(lambda: (p := store.latest("m1", "power_kw")) is not None and p.value == 7.5,
                       "the other signal stored")
        assert str(2**63 + 5) in store.dead_letters(device_id="m1")[0].value
    finally:
        await asyncio.wait_for(gateway.stop(), 90)
        await server.stop()
