"""`profile:` in a device block names a profile its connector ships (the Modbus meter maps in
connectors/modbus/profiles/) or a gateway template; the block's own signals override or extend
the profile's. A config naming a meter loads, passes `shangyun check`, and a gateway run against a
Modbus server laid out as that meter's manual documents stores its power and energy."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import AsyncIterator

import pytest

from connectors import registry
from edge.errors import ConfigError
from gateway.cli import main
from gateway.config import load_config
from gateway.runner import Gateway
from tests.connectors.servers import ModbusTestServer, free_port
from tests.gateway.test_end_to_end import wait_for

METER = """\
gateway:
  store: {{path: {store}}}
devices:
  - id: meter-07
    type: modbus
    profile: {profile}
    connection: {{host: 127.0.0.1, port: {port}, poll_interval_s: 0.2, device_identification: false}}
"""


def write(tmp_path: Path, port: int = 502, profile: str = "eastron-sdm630", extra: str = "") -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(METER.format(store=tmp_path / "gw.db", profile=profile, port=port) + extra,
                    encoding="utf-8")
    return path


def f32(x: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", x))
    return [hi, lo]


def test_the_modbus_connector_lists_its_profiles_by_name():
    modbus = registry.get("modbus")
    assert {"eastron-sdm630", "chint-dtsu666", "acrel-adl3000", "generic-machine"} <= set(modbus.profile_names())
    assert modbus.profile("no-such-meter") is None
    assert registry.get("mqtt").profile_names() == []


def test_a_device_naming_a_meter_profile_gets_its_signals_and_serial_registers(tmp_path):
    (dev,) = load_config(write(tmp_path)).devices
    power, energy = dev.signal("power_kw"), dev.signal("energy_kwh")
    assert power is not None and power.scale == 0.001          # W in the register, kW stored
    assert power.address.table == "input" and power.address.offset == 0x0034
    assert energy is not None and energy.address.offset == 0x0048
    assert dev.profile == "eastron-sdm630"
    # the meter's serial-number registers: identity evidence without writing them out
    assert dev.connection["serial_registers"]["offset"] == 0xFC00
    # its line settings are the block's: reached over TCP here, not the profile's RTU
    assert dev.connection["transport"] == "tcp"


def test_signals_in_the_block_override_and_extend_the_profiles(tmp_path):
    extra = ("    signals:\n"
             "      - {name: power_kw, address: {table: input, offset: 0x0034, type: float32}, scale: 0.002}\n"
             "      - {name: state, address: {table: holding, offset: 0}, states: {1: running}}\n")
    (dev,) = load_config(write(tmp_path, extra=extra)).devices
    names = [s.name for s in dev.signals]
    assert names.count("power_kw") == 1 and dev.signal("power_kw").scale == 0.002
    assert names[-1] == "state" and "energy_kwh" in names and "voltage_l1_v" in names


def test_an_unknown_profile_lists_the_valid_names_and_its_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, profile="eastron-sdm999"))
    msg = str(info.value)
    assert info.value.line == 6
    assert "unknown profile 'eastron-sdm999' for a modbus device" in msg
    assert "eastron-sdm630" in msg and "chint-dtsu666" in msg and "sim-modbus" in msg


def test_a_bad_address_in_an_override_names_its_line(tmp_path):
    extra = "    signals:\n      - {name: power_kw, address: {table: input, offset: -1}}\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, extra=extra))
    assert info.value.line == 9


def test_shangyun_check_accepts_a_meter_profile(tmp_path, capsys):
    assert main(["check", "--no-resolve", "-c", str(write(tmp_path))]) == 0
    assert "OK, 1 device" in capsys.readouterr().out


@pytest.fixture
async def sdm630() -> AsyncIterator[ModbusTestServer]:
    """Registers where Eastron's manual puts them: floats, high word first, W and kWh."""
    server = ModbusTestServer(free_port(), size=0x160)
    for offset, value in ((0x0034, 4500.0), (0x0046, 50.0), (0x0048, 321.5)):
        server.input[offset:offset + 2] = f32(value)
    await server.start()
    yield server
    await server.stop()


async def test_a_gateway_run_stores_the_meters_power_and_energy(tmp_path, sdm630):
    gateway = Gateway(load_config(write(tmp_path, port=sdm630.port)))
    await gateway.start()
    store = gateway.store
    try:
        def stored(signal: str) -> float | None:
            latest = store.latest("meter-07", signal)
            return latest.value if latest is not None else None

        await wait_for(lambda: stored("energy_kwh") == 321.5, "meter-07.energy_kwh = 321.5")
        await wait_for(lambda: stored("power_kw") == pytest.approx(4.5), "meter-07.power_kw = 4.5")
        sdm630.input[0x0048:0x004A] = f32(322.0)   # the meter counts up
        await wait_for(lambda: stored("energy_kwh") == 322.0, "meter-07.energy_kwh = 322.0")
    finally:
        await gateway.stop()


def test_a_gateway_template_is_overridden_and_extended_the_same_way(tmp_path):
    """Before, any `signals:` in the block dropped the template's signals altogether."""
    extra = "    signals:\n      - {name: spindle_rpm, address: {table: holding, offset: 40}}\n"
    (dev,) = load_config(write(tmp_path, profile="sim-modbus", extra=extra)).devices
    names = {s.name for s in dev.signals}
    assert {"state", "count_total", "power_kw", "energy_kwh", "spindle_rpm"} <= names
