"""Each protocol server read back over the wire with the real library clients."""
from __future__ import annotations

import asyncio
import json
import queue
import struct
import time
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from simulator.broker import MosquittoBroker
from simulator.machine import Machine, make_specs
from simulator.modbus_server import ModbusMachineServer
from simulator.mqtt_publisher import MqttMachinePublisher
from simulator.opcua_server import NAMESPACE_URI, OpcUaMachineServer
from simulator.ports import free_port

SPECS = make_specs(6, seed=3)


def machine(i: int) -> Machine:
    m = Machine(SPECS[i], time.time() - 3600)
    m.advance(time.time())
    return m


async def test_opcua_server_serves_identity_and_values() -> None:
    m = machine(0)
    server = OpcUaMachineServer(m, host="127.0.0.1", port=free_port())
    await server.start()
    try:
        values, ts = m.values(), m.now
        await server.update(values, ts)
        async with Client(server.endpoint) as client:
            endpoints = await client.get_endpoints()
            assert endpoints[0].Server.ApplicationUri == f"urn:shangyun:sim:{m.spec.serial}"
            build = await client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus_BuildInfo)).read_value()
            assert (build.ManufacturerName, build.ProductName) == (m.profile.vendor, m.profile.model)
            assert build.SoftwareVersion == m.profile.firmware
            assert build.ProductUri.startswith("urn:shangyun:sim:")
            idx = await client.get_namespace_index(NAMESPACE_URI)

            async def read(name: str) -> ua.DataValue:
                return await client.get_node(ua.NodeId(f"{m.spec.id}.{name}", idx)).read_data_value()

            state = await read("State")
            assert state.Value.Value == values["state_code"]
            assert state.Value.VariantType == ua.VariantType.Int32
            assert state.SourceTimestamp == datetime.fromtimestamp(ts, timezone.utc)
            total = await read("CountTotal")
            assert (total.Value.Value, total.Value.VariantType) == (values["count_total"], ua.VariantType.UInt16)
            assert (await read("EnergyKwh")).Value.Value == values["energy_kwh"]
            assert (await read("PowerKw")).Value.Value == values["power_kw"]
            assert (await read("ReasonCode")).Value.Value == values["reason_code"]
            assert (await read("Alarm")).Value.Value == values["alarm"]
            assert (await read("SerialNumber")).Value.Value == m.spec.serial
            # A later write carries the later source timestamp.
            m.advance(m.now + 30)
            await server.update(m.values(), m.now)
            assert (await read("PowerKw")).SourceTimestamp == datetime.fromtimestamp(m.now, timezone.utc)
    finally:
        await server.stop()


def decode_registers(regs: list[int]) -> dict:
    return {
        "state_code": regs[0], "count_total": regs[1], "count_good": regs[2], "count_reject": regs[3],
        "power_kw": struct.unpack(">f", struct.pack(">HH", regs[4], regs[5]))[0],
        "energy_kwh": ((regs[6] << 16) | regs[7]) * 0.01,
        "reason_code": regs[8], "alarm": bool(regs[9]),
    }


async def test_modbus_servers_serve_registers_and_their_own_identity() -> None:
    # Two servers in one process: each must answer 43/14 with its own identity.
    machines = [machine(1), machine(4)]
    servers = [ModbusMachineServer(m, host="127.0.0.1", port=free_port()) for m in machines]
    for s in servers:
        await s.start()
        await s.update(s.machine.values(), s.machine.now)
    try:
        for s in servers:
            m, values = s.machine, s.machine.values()
            client = AsyncModbusTcpClient("127.0.0.1", port=s.port)
            assert await client.connect()
            try:
                rr = await client.read_holding_registers(0, count=10, device_id=1)
                assert not rr.isError(), rr
                got = decode_registers(rr.registers)
                for key in ("state_code", "count_total", "count_good", "count_reject", "reason_code", "alarm"):
                    assert got[key] == values[key], key
                assert abs(got["power_kw"] - values["power_kw"]) < 1e-3
                assert abs(got["energy_kwh"] - values["energy_kwh"]) < 0.006
                rr = await client.read_holding_registers(100, count=8, device_id=1)
                serial = b"".join(struct.pack(">H", r) for r in rr.registers).decode("ascii")
                assert serial == m.spec.serial.ljust(16)
                info = (await client.read_device_information(read_code=3, device_id=1)).information
                assert info[0] == m.profile.vendor.encode()
                assert info[1] == m.profile.model.encode()
                assert info[0x80] == m.spec.serial.encode()
                only = (await client.read_device_information(read_code=4, object_id=0x80, device_id=1)).information
                assert only == {0x80: m.spec.serial.encode()}
                # Values move with the machine.
                m.advance(m.now + 600)
                await s.update(m.values(), m.now)
                rr = await client.read_holding_registers(6, count=2, device_id=1)
                assert ((rr.registers[0] << 16) | rr.registers[1]) == round(m.values()["energy_kwh"] * 100)
            finally:
                client.close()
    finally:
        for s in servers:
            await s.stop()


class Subscriber:
    """A paho subscriber collecting (topic, payload) into a queue."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: queue.Queue[tuple[str, dict, bool]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-sub-{time.monotonic_ns()}")
        self.client.on_message = lambda c, u, msg: self.messages.put(
            (msg.topic, json.loads(msg.payload), bool(msg.retain)))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.connect(host, port)
        self.client.loop_start()

    async def next(self, topic_suffix: str, publish: MqttMachinePublisher | None = None,
                   timeout_s: float = 15.0) -> tuple[dict, bool]:
        """Next message on a topic ending in `topic_suffix`; keeps `publish` ticking meanwhile."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if publish is not None:
                m = publish.machine
                m.advance(m.now + publish.interval_s)
                await publish.update(m.values(), m.now)
            try:
                topic, payload, retained = await asyncio.to_thread(self.messages.get, timeout=0.1)
            except queue.Empty:
                continue
            if topic.endswith(topic_suffix):
                return payload, retained
        raise AssertionError(f"no message on *{topic_suffix} within {timeout_s} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_mqtt_identity_telemetry_and_reconnect() -> None:
    m = machine(2)
    assert m.spec.protocol == "mqtt"
    broker = MosquittoBroker()
    host, port = broker.start()
    pub = MqttMachinePublisher(m, broker=(host, port), ts_format="epoch_ms")
    await pub.start()
    sub = Subscriber(host, port, f"shangyun/sim/{m.spec.id}/#")
    try:
        identity, retained = await sub.next("/identity")
        assert identity == {"client_id": f"sim-{m.spec.serial}", "serial_number": m.spec.serial,
                            "vendor": m.profile.vendor, "model": m.profile.model,
                            "firmware": m.profile.firmware}
        telemetry, _ = await sub.next("/telemetry", publish=pub)
        assert isinstance(telemetry["ts"], int) and abs(telemetry["ts"] / 1000 - m.now) < 3600
        assert telemetry["state"] in ("running", "idle", "stopped", "fault", "setup", "planned_stop")
        assert set(telemetry) == {"ts", "state", "reason_code", "count_total", "count_good",
                                  "count_reject", "power_kw", "energy_kwh", "alarm"}
        sub.close()
        late = Subscriber(host, port, f"shangyun/sim/{m.spec.id}/identity")
        try:
            identity, retained = await late.next("/identity")
            assert retained and identity["serial_number"] == m.spec.serial
        finally:
            late.close()

        # The broker goes away and comes back (empty: persistence is off). The publisher must
        # reconnect by itself and republish its retained identity.
        broker.stop()
        broker.start()
        sub = Subscriber(host, port, f"shangyun/sim/{m.spec.id}/#")
        identity, retained = await sub.next("/identity", timeout_s=20)
        assert identity["serial_number"] == m.spec.serial  # live or retained: the broker was empty
        telemetry, _ = await sub.next("/telemetry", publish=pub)
        assert telemetry["energy_kwh"] >= 0
    finally:
        sub.close()
        await pub.stop()
        broker.close()


def test_mqtt_ts_formats() -> None:
    from simulator.mqtt_publisher import format_ts
    ts = 1_700_000_000.25
    assert format_ts(ts, "epoch_s") == 1_700_000_000.25
    assert format_ts(ts, "epoch_ms") == 1_700_000_000_250
    iso = format_ts(ts, "iso8601")
    assert iso.endswith("+08:00") and datetime.fromisoformat(iso).timestamp() == ts


def test_bad_ts_format_refused() -> None:
    import pytest
    with pytest.raises(ValueError, match="ts format"):
        MqttMachinePublisher(machine(2), broker=("127.0.0.1", 1), ts_format="julian")

