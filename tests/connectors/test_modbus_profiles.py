"""Meter profiles (connectors/modbus/profiles/*.yaml): they load, cite their manual, map the energy
roles, and decode registers laid out as each manual documents them into the right figures."""
from __future__ import annotations

import struct
from typing import Any, AsyncIterator

import pytest

from connectors.modbus import profiles
from connectors.modbus.source import ModbusSource
from edge.errors import ConfigError
from tests.connectors.devices import device
from tests.connectors.servers import ModbusTestServer, free_port

METERS = ("eastron-sdm630", "chint-dtsu666", "acrel-adl3000")


def f32(x: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", x))
    return [hi, lo]


def test_every_profile_loads_and_says_where_its_map_comes_from():
    assert set(METERS) | {"generic-machine"} <= set(profiles.names())
    for name in profiles.names():
        p = profiles.load(name)
        assert p.manual.strip() and p.verified.strip()
        roles = {s.name for s in p.signals}
        assert "energy_kwh" in roles, name  # the energy analysis works out of the box
        assert len(roles) == len(p.signals), f"{name}: a signal name repeats"


def test_meters_whose_power_register_was_verified_map_power_kw():
    for name in ("eastron-sdm630", "chint-dtsu666"):
        assert "power_kw" in {s.name for s in profiles.load(name).signals}
    # Acrel's power register was not found in its manual: the profile says so instead of guessing
    acrel = profiles.load("acrel-adl3000")
    assert "power_kw" not in {s.name for s in acrel.signals}
    assert "power_kw is NOT mapped" in acrel.verified


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ConfigError, match="known: acrel-adl3000, chint-dtsu666"):
        profiles.load("no-such-meter")


def test_profile_line_settings_take_the_device_overrides():
    conn = profiles.load("chint-dtsu666").connection_for(transport="rtu-over-tcp", host="10.0.0.9",
                                                         device_id=7, serial=None)
    assert (conn.transport, conn.baud, conn.device_id) == ("rtu-over-tcp", 9600, 7)
    with pytest.raises(ConfigError, match="profile eastron-sdm630: connection"):
        profiles.load("eastron-sdm630").connection_for(baud=5)


@pytest.fixture
async def meter_server() -> AsyncIterator[ModbusTestServer]:
    server = ModbusTestServer(free_port(), size=0x4030)
    await server.start()
    yield server
    await server.stop()


def as_device(name: str, port: int) -> Any:
    p = profiles.load(name)
    signals = [{"name": s.name, "address": s.address.model_dump(), "scale": s.scale, "offset": s.offset}
                for s in p.signals]
    return device("modbus", {"host": "127.0.0.1", "port": port, "device_identification": False}, signals,
                  device_id=name)


# Register contents as each manual documents its encoding, and the figures they stand for.
LAYOUTS: dict[str, tuple[list[tuple[str, int, list[int]]], dict[str, float]]] = {
    # Eastron: IEEE 754 floats, high word first, W and kWh (function 04)
    "eastron-sdm630": ([("input", 0x0034, f32(1234.5)), ("input", 0x0048, f32(5678.25)),
                        ("input", 0x0046, f32(50.0))],
                       {"power_kw": 1.2345, "energy_kwh": 5678.25, "frequency_hz": 50.0}),
    # CHINT: floats, Pt in 0.1 W, frequency in 0.01 Hz, energy in kWh (function 03)
    "chint-dtsu666": ([("holding", 0x2012, f32(12345.0)), ("holding", 0x401E, f32(100.5)),
                       ("holding", 0x2044, f32(4998.0)), ("holding", 0x0000, [204])],
                      {"power_kw": 1.2345, "energy_kwh": 100.5, "frequency_hz": 49.98, "software_version": 204}),
    # Acrel: energy a 32-bit count of 0.01 kWh (E = data x PT x CT x 0.01, PT = CT = 1)
    "acrel-adl3000": ([("holding", 0x0000, [0x0001, 0xE240])],  # 123456
                      {"energy_kwh": 1234.56}),
}


@pytest.mark.parametrize("name", METERS)
async def test_profile_decodes_the_figures_its_manual_documents(meter_server, name):
    layout, figures = LAYOUTS[name]
    for table, offset, regs in layout:
        target = meter_server.input if table == "input" else meter_server.holding
        target[offset:offset + len(regs)] = regs
    src = ModbusSource(as_device(name, meter_server.port))
    try:
        await src.connect()
        batch = {s.signal: s.value for s in await src.poll()}
    finally:
        await src.close()
    for signal, value in figures.items():
        assert batch[signal] == pytest.approx(value, rel=1e-6), signal
