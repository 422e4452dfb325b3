"""The factory end to end: servers on free ports, the clock, the manifest, stop/start of a machine,
and the CLI."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from simulator.broker import MosquittoBroker
from simulator.cli import build_parser, main
from simulator.factory import Factory
from simulator.machine import make_specs
from simulator.opcua_server import NAMESPACE_URI

from .test_servers import Subscriber


async def eventually(check, timeout_s: float = 15.0, what: str = "condition"):
    """Await `check()` until it returns something truthy, or fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def modbus_energy(host: str, port: int) -> tuple[int, ...] | None:
    """Power and energy registers (4..7), or None when the machine cannot be reached."""
    client = AsyncModbusTcpClient(host, port=port, timeout=1, retries=0)
    try:
        if not await client.connect():
            return None
        rr = await client.read_holding_registers(4, count=4, device_id=1)
        return None if rr.isError() else tuple(rr.registers)
    except Exception:
        return None
    finally:
        client.close()


async def opcua_state(endpoint: str, machine_id: str) -> int | None:
    try:
        async with Client(endpoint, timeout=2) as client:
            idx = await client.get_namespace_index(NAMESPACE_URI)
            return await client.get_node(ua.NodeId(f"{machine_id}.State", idx)).read_value()
    except (OSError, asyncio.TimeoutError, ua.UaError):
        return None


async def test_factory_serves_all_protocols_and_survives_machine_restarts(broker: MosquittoBroker) -> None:
    specs = make_specs(3, seed=5)
    factory = Factory(specs, broker=(broker.host, broker.port), tick_s=0.2)
    await factory.start()
    sub = Subscriber(broker.host, broker.port, "shangyun/sim/#")
    try:
        manifest = factory.manifest()
        assert manifest["broker"] == {"host": broker.host, "port": broker.port}
        by_id = {m["id"]: m for m in manifest["machines"]}
        opc, mb, mq = (by_id[s.id] for s in specs)
        assert opc["endpoint"].startswith("opc.tcp://127.0.0.1:") and opc["endpoint"].endswith("/shangyun/" + opc["id"])
        assert (mb["host"], mb["device_id"]) == ("127.0.0.1", 1) and mb["port"] > 0
        assert mq["topic_prefix"] == f"shangyun/sim/{mq['id']}"
        for m, s in zip(manifest["machines"], specs):
            assert m["serial"] == s.serial and m["ideal_cycle_s"] > 0 and m["vendor"] and m["model"]

        # The factory's own clock feeds every protocol.
        assert await opcua_state(opc["endpoint"], opc["id"]) in range(1, 7)
        first = await eventually(lambda: modbus_energy(mb["host"], mb["port"]), what="modbus energy")
        # Power carries noise on every tick, so it moves even while the machine is off shift.
        await eventually(lambda: _moved(mb, first), what="modbus power to move")
        telemetry, _ = await sub.next(f"{mq['id']}/telemetry")
        assert telemetry["energy_kwh"] > 0

        # Off the network and back, on the same port.
        await factory.stop_machine(mb["id"])
        assert await modbus_energy(mb["host"], mb["port"]) is None
        await factory.start_machine(mb["id"])
        back = await eventually(lambda: modbus_energy(mb["host"], mb["port"]), what="modbus back")
        assert (back[2] << 16 | back[3]) >= (first[2] << 16 | first[3])  # the meter never goes back

        await factory.stop_machine(opc["id"])
        assert await opcua_state(opc["endpoint"], opc["id"]) is None
        await factory.start_machine(opc["id"])
        assert await eventually(lambda: opcua_state(opc["endpoint"], opc["id"]), what="opcua back") in range(1, 7)
        assert factory.manifest() == manifest

        with pytest.raises(KeyError, match="no machine"):
            await factory.stop_machine("m99")
    finally:
        sub.close()
        await factory.stop()


async def _moved(entry: dict, first: tuple[int, ...]) -> bool:
    now = await modbus_energy(entry["host"], entry["port"])
    return now is not None and now[:2] != first[:2]


def test_factory_refuses_mqtt_without_broker_and_duplicate_ids() -> None:
    specs = make_specs(3)
    with pytest.raises(ValueError, match="broker"):
        Factory(specs, broker=None)
    with pytest.raises(ValueError, match="unique"):
        Factory([specs[0], specs[0]], broker=None)
    Factory(specs[:2], broker=None)  # OPC UA and Modbus need none


def test_cli_runs_for_a_duration_and_writes_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest_path = tmp_path / "factory.json"
    assert main(["--machines", "3", "--seed", "4", "--duration", "0.5", "--manifest", str(manifest_path)]) == 0
    manifest = json.loads(manifest_path.read_text())
    assert len(manifest["machines"]) == 3
    assert manifest["broker"]["port"] > 0
    out = capsys.readouterr().out
    assert "3 machines" in out and manifest["machines"][0]["endpoint"] in out
    assert "simulator stopped" in out


@pytest.mark.parametrize("argv", [["--machines", "0"], ["--broker", "nohost"], ["--duration", "-1"]])
def test_cli_rejects_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "expected" in capsys.readouterr().err
