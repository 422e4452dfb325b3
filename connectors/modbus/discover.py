"""Unit scan and discovery on one Modbus line: which unit ids answer, what they say they are
(43/14 device identification), and which known profile their identifying registers match.

A unit is present when it answers anything, even an exception: a silent unit costs one timeout.
The scan goes through the same bus as polling, so units are asked one at a time with the line's
inter-frame pause.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import yaml
from pydantic import ValidationError

from connectors.modbus import profiles
from connectors.modbus.config import ModbusAddress, ModbusConnection
from connectors.modbus.profiles import Profile
from connectors.modbus.source import ExceptionResponse, ModbusSource
from edge.errors import ConfigError, PayloadError, SourceError
from edge.model import DeviceSpec

# Read first to learn whether a unit is there; an exception answer counts as present.
_PRESENCE = ModbusAddress(table="holding", offset=0)

Progress = Callable[[int, int, int], None]  # (units done, units to scan, units found)


@dataclass
class Found:
    unit: int
    profile: str = ""                      # "" when no known profile matched
    identification: dict[str, str] = field(default_factory=dict)
    serial_number: str = ""


def parse_units(text: str) -> list[int]:
    """`1-10,15,20-22` as unit ids; ValueError naming the bad part."""
    units: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"unit range {part!r}: expected N or N-M") from None
        if not 1 <= a <= b <= 247:
            raise ValueError(f"unit range {part!r}: unit ids are 1-247")
        units.update(range(a, b + 1))
    return sorted(units)


def _source(connection: dict[str, Any], unit: int, *, identification: bool) -> ModbusSource:
    conn = ModbusConnection.model_validate({**connection, "device_id": unit,
                                            "device_identification": identification})
    return ModbusSource(DeviceSpec(id=f"scan-{unit}", name=f"unit {unit}", protocol="modbus",
                                   connection=conn.model_dump(), signals=()))


async def _answers(src: ModbusSource) -> bool:
    try:
        await src.read_value(_PRESENCE)
    except SourceError:
        return False
    except (ExceptionResponse, PayloadError):
        pass
    return True


async def _matches(src: ModbusSource, profile: Profile) -> bool:
    if not profile.identify:
        return False
    for probe in profile.identify:
        try:
            value = await src.read_value(probe.address)
        except (SourceError, PayloadError):
            return False
        if isinstance(value, str) or not probe.min <= float(value) <= probe.max:
            return False
    return True


async def scan(connection: dict[str, Any], units: Iterable[int], *,
               progress: Progress | None = None) -> list[Found]:
    """The units of `units` that answer on the line `connection` describes (without device_id)."""
    todo = list(units)
    known = [profiles.load(n) for n in profiles.names()]
    found: list[Found] = []
    for done, unit in enumerate(todo, 1):
        src = _source(connection, unit, identification=False)
        try:
            await src.connect()  # joins the bus; no request yet
            if await _answers(src):
                hit = Found(unit)
                for profile in known:
                    if await _matches(src, profile):
                        hit.profile = profile.profile
                        break
                found.append(hit)
        except SourceError:
            pass  # the line itself is down for this unit: not found
        finally:
            await src.close()
        if found and found[-1].unit == unit:
            await _identify(connection, found[-1])
        if progress is not None:
            progress(done, len(todo), len(found))
    return found


async def _identify(connection: dict[str, Any], hit: Found) -> None:
    """43/14 of a present unit, and its serial registers when its profile maps them."""
    extra: dict[str, Any] = {}
    if hit.profile:
        serial = profiles.load(hit.profile).serial_registers
        if serial is not None:
            extra["serial_registers"] = serial.model_dump()
    src = _source({**connection, **extra}, hit.unit, identification=True)
    try:
        identity = await src.connect()
        hit.identification = {k: v for k, v in identity.details.items() if k != "serial_registers"}
        hit.serial_number = identity.serial_number
    except SourceError:
        pass  # present, but does not answer 43/14 (many meters do not): identified by profile only
    finally:
        await src.close()


def device_entries(connection: dict[str, Any], found: list[Found]) -> list[dict[str, Any]]:
    """Device config entries (the gateway's YAML shape) for the units whose profile was
    recognised: the profile supplies signals and serial registers, the scan the serial number
    seen (identity evidence to re-check on every connect). Unrecognised units are left out: they
    have no map to poll."""
    entries = []
    for hit in found:
        if not hit.profile:
            continue
        p = profiles.load(hit.profile)
        conn = {**{k: v for k, v in connection.items() if v is not None}, "device_id": hit.unit}
        if p.serial_registers is not None:
            conn["serial_registers"] = p.serial_registers.model_dump(exclude_defaults=True) | {
                "offset": p.serial_registers.offset}
        signals = []
        for s in p.signals:
            sig: dict[str, Any] = {"name": s.name, "address": s.address.model_dump(exclude_defaults=True)
                                   | {"offset": s.address.offset}}
            if s.scale != 1.0:
                sig["scale"] = s.scale
            if s.offset:
                sig["offset"] = s.offset
            if s.states:
                sig["states"] = dict(s.states)
            signals.append(sig)
        entry: dict[str, Any] = {"id": f"{p.profile}-u{hit.unit}", "name": f"{p.vendor} {p.model} (unit {hit.unit})",
                                 "type": "modbus", "profile": p.profile, "connection": conn, "signals": signals}
        if hit.serial_number:
            entry["identity"] = {"serial_number": hit.serial_number}
        entries.append(entry)
    return entries


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`shangyun discover modbus HOST[:PORT] | --serial DEV ...`"""
    p.add_argument("endpoint", nargs="?", metavar="HOST[:PORT]", help="Modbus TCP device, gateway or serial server")
    p.add_argument("--units", default="1-247", help="unit ids to scan, e.g. 1-10,15 (default 1-247)")
    p.add_argument("--rtu-over-tcp", action="store_true", help="HOST is a serial server passing RTU frames")
    p.add_argument("--serial", metavar="DEV", help="scan the RS-485 line on this serial port instead")
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--parity", choices=["N", "E", "O"], default="N")
    p.add_argument("--stop-bits", type=int, choices=[1, 2], default=1)
    p.add_argument("--timeout", type=float, default=0.5, metavar="S", help="answer time per unit (default 0.5)")
    p.add_argument("-o", "--output", metavar="FILE", help="write device YAML for the recognised units")


def _connection(args: argparse.Namespace) -> dict[str, Any]:
    if (args.serial is None) == (args.endpoint is None):
        raise ConfigError("give either HOST[:PORT] or --serial DEV")
    if args.serial is not None:
        return {"transport": "rtu", "serial": args.serial, "baud": args.baud, "parity": args.parity,
                "stop_bits": args.stop_bits, "timeout_s": args.timeout}
    host, _, port = args.endpoint.rpartition(":") if ":" in args.endpoint else (args.endpoint, "", "")
    conn: dict[str, Any] = {"transport": "rtu-over-tcp" if args.rtu_over_tcp else "tcp", "host": host,
                            "timeout_s": args.timeout}
    if port:
        if not port.isdigit():
            raise ConfigError(f"{args.endpoint}: port must be a number")
        conn["port"] = int(port)
    try:
        ModbusConnection.model_validate(conn)
    except ValidationError as err:
        raise ConfigError(f"{args.endpoint}: {err.errors()[0]['msg']}") from None
    return conn


def _bar(done: int, total: int, found: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done == total else ""
    print(f"\rscanning [{'#' * filled}{'.' * (width - filled)}] {done}/{total} units, {found} found",
          end=end, file=sys.stderr, flush=True)


def run_cli(args: argparse.Namespace) -> int:
    conn = _connection(args)
    try:
        units = parse_units(args.units)
    except ValueError as err:
        raise ConfigError(f"--units: {err}") from None
    found = asyncio.run(scan(conn, units, progress=_bar if sys.stderr.isatty() else None))
    for hit in found:
        ident = ", ".join(f"{k}={v}" for k, v in hit.identification.items())
        print(f"unit {hit.unit:3d}  {hit.profile or '(no known profile)':20s}  "
              f"{'serial ' + hit.serial_number if hit.serial_number else ''}  {ident}".rstrip())
    if not found:
        print("no unit answered", file=sys.stderr)
    entries = device_entries(conn, found)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            yaml.safe_dump({"devices": entries}, f, sort_keys=False, allow_unicode=True)
        print(f"wrote {len(entries)} device(s) to {args.output}", file=sys.stderr)
    return 0 if found else 1
