"""Unit scan on an RTU-over-TCP line: it finds exactly the units that answer, names their profiles,
and writes device entries the gateway's config loader accepts."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import AsyncIterator

import pytest
import yaml

from connectors.modbus.discover import device_entries, parse_units, scan
from tests.connectors.modbus_rig import RtuBus
from tests.connectors.servers import free_port

DTSU, MACHINE, SILENT, BARE = 1, 2, 3, 4


@pytest.fixture
async def line() -> AsyncIterator[RtuBus]:
    bus = RtuBus(free_port(), [DTSU, MACHINE, BARE], silent=(SILENT,), size=0x4030)
    hi, lo = struct.unpack(">HH", struct.pack(">f", 4998.0))  # DTSU666 frequency, 0.01 Hz
    bus.registers[DTSU][0x2044:0x2046] = [hi, lo]
    bus.registers[DTSU][0] = 204                                 # its software version
    bus.registers[MACHINE][0] = 1                                # a machine state code (running)
    await bus.start()
    yield bus
    await bus.stop()


async def test_scan_finds_the_units_that_answer_and_names_their_profiles(line, tmp_path: Path):
    conn = {"transport": "rtu-over-tcp", "host": "127.0.0.1", "port": line.port, "timeout_s": 0.3}
    seen: list[tuple[int, int, int]] = []
    found = await scan(conn, parse_units("1-5"), progress=lambda *p: seen.append(p))
    assert [(f.unit, f.profile) for f in found] == [(DTSU, "chint-dtsu666"), (MACHINE, "generic-machine"),
                                                     (BARE, "")]
    assert seen[-1] == (5, 5, 3) and len(seen) == 5
    entries = device_entries(conn, found)
    assert [e["id"] for e in entries] == ["chint-dtsu666-u1", "generic-machine-u2"]  # BARE has no map

    # The written YAML is a config the gateway loads as it is.
    from gateway.config import load_config
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"devices": entries}, sort_keys=False, allow_unicode=True), encoding="utf-8")
    config = load_config(path)
    meter = next(d for d in config.devices if d.id == "chint-dtsu666-u1")
    assert meter.connection["device_id"] == DTSU and meter.connection["transport"] == "rtu-over-tcp"
    assert {"power_kw", "energy_kwh"} <= {s.name for s in meter.signals}


@pytest.mark.parametrize("text,message", [("0-3", "1-247"), ("5-2", "1-247"), ("a", "N or N-M")])
def test_unit_ranges_are_checked(text, message):
    with pytest.raises(ValueError, match=message):
        parse_units(text)


def test_unit_ranges_parse():
    assert parse_units("1-3,7,9-10") == [1, 2, 3, 7, 9, 10]


async def test_discover_command_writes_the_recognised_devices(line, tmp_path: Path):
    import asyncio
    import os
    import sys
    out = tmp_path / "devices.yaml"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "discover", "modbus", f"127.0.0.1:{line.port}", "--rtu-over-tcp",
        "--units", "1-4", "--timeout", "0.3", "-o", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    lines = stdout.decode().splitlines()
    assert [ln.split()[1] for ln in lines] == ["1", "2", "4"]
    assert "chint-dtsu666" in lines[0] and "(no known profile)" in lines[2]
    written = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert [d["profile"] for d in written["devices"]] == ["chint-dtsu666", "generic-machine"]
