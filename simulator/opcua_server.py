"""One asyncua server per simulated machine, laid out as ADDRESSES.md says. The only importer of asyncua
in the simulator.

Loading the standard OPC UA address space costs about a second of CPU per server; the first
server of a process builds a shelf of it in a temporary directory and the others load nodes from
that shelf lazily (~40 ms each), so a 10-server factory starts in about 1.5 s instead of 10.
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import re
import tempfile
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from asyncua import Server, ua

from .machine import Machine

NAMESPACE_URI = "urn:shangyun:sim"

# name in ADDRESSES.md -> (key in Machine.values(), OPC UA type)
VARIABLES: dict[str, tuple[str, ua.VariantType]] = {
    "State": ("state_code", ua.VariantType.Int32),
    "CountTotal": ("count_total", ua.VariantType.UInt16),
    "CountGood": ("count_good", ua.VariantType.UInt16),
    "CountReject": ("count_reject", ua.VariantType.UInt16),
    "PowerKw": ("power_kw", ua.VariantType.Double),
    "EnergyKwh": ("energy_kwh", ua.VariantType.Double),
    "ReasonCode": ("reason_code", ua.VariantType.Int32),
    "Alarm": ("alarm", ua.VariantType.Boolean),
}
_INITIAL = {
    ua.VariantType.Int32: 0, ua.VariantType.UInt16: 0,
    ua.VariantType.Double: 0.0, ua.VariantType.Boolean: False,
}

# asyncua logs a warning per server about security policies we deliberately do not offer.
logging.getLogger("asyncua.server.server").setLevel(logging.ERROR)


def slug(text: str) -> str:
    """'Han's Laser' -> 'hans-laser': URIs may not carry spaces or quotes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "")).strip("-")


def endpoint_url(host: str, port: int, machine_id: str) -> str:
    return f"opc.tcp://{host}:{port}/shangyun/{machine_id}"


def application_uri(serial: str) -> str:
    return f"urn:shangyun:sim:{serial}"


class _StandardShelf:
    """The standard address space, built once per process, shared read-only by all servers."""

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._ready = False
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    async def init(self, server: Server) -> None:
        loop = asyncio.get_running_loop()
        lock = self._locks.setdefault(loop, asyncio.Lock())
        async with lock:
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="shangyun-opcua-")
                atexit.register(self._dir.cleanup)
            path = Path(self._dir.name) / "aspace"
            await server.init(path)
            if not self._ready:
                # Python's fallback dbm (dbm.dumb) writes aspace.dat/.dir, and asyncua only
                # looks for `aspace` itself or `aspace.db`; an empty marker file makes later
                # servers load the shelf (dbm.whichdb identifies dumb dbm by .dat/.dir first).
                path.touch()
                self._ready = True


_SHELF = _StandardShelf()


class OpcUaMachineServer:
    """Serves one machine at opc.tcp://host:port/shangyun/<id> (security None)."""

    def __init__(self, machine: Machine, *, host: str, port: int) -> None:
        self.machine = machine
        self.host = host
        self.port = port
        self._server: Server | None = None
        self._nodes: dict[str, ua.NodeId] = {}
        self._last: dict[str, Any] = {}
        self._running = False

    @property
    def endpoint(self) -> str:
        return endpoint_url(self.host, self.port, self.machine.spec.id)

    @property
    def running(self) -> bool:
        return self._running

    async def start(self) -> None:
        """Listen; the first call builds the address space, later calls reuse it (same port)."""
        if self._running:
            return
        if self._server is None:
            self._server = await self._build()
        await self._server.start()
        self._running = True

    async def stop(self) -> None:
        if self._running and self._server is not None:
            self._running = False
            await self._server.stop()

    async def _build(self) -> Server:
        spec, profile = self.machine.spec, self.machine.profile
        server = Server()
        await _SHELF.init(server)
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"{profile.vendor} {profile.model} ({spec.name})")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        await server.set_application_uri(application_uri(spec.serial))
        await server.set_build_info(
            product_uri=f"urn:shangyun:sim:{slug(profile.vendor)}",
            manufacturer_name=profile.vendor,
            product_name=profile.model,
            software_version=profile.firmware,
            build_number=str(spec.seed % 10_000),
            build_date=datetime(2023, 1, 1, tzinfo=timezone.utc),
        )
        idx = await server.register_namespace(NAMESPACE_URI)
        folder = await server.nodes.objects.add_object(ua.NodeId(spec.id, idx), ua.QualifiedName(spec.id, idx))
        for name, (_, vtype) in VARIABLES.items():
            node = await folder.add_variable(
                ua.NodeId(f"{spec.id}.{name}", idx), ua.QualifiedName(name, idx),
                ua.Variant(_INITIAL[vtype], vtype),
            )
            self._nodes[name] = node.nodeid
        serial = await folder.add_variable(
            ua.NodeId(f"{spec.id}.SerialNumber", idx), ua.QualifiedName("SerialNumber", idx),
            ua.Variant(spec.serial, ua.VariantType.String),
        )
        self._nodes["SerialNumber"] = serial.nodeid
        return server

    async def update(self, values: dict, ts: float) -> None:
        """Publish the machine's values; only changed ones are written, each with its source
        timestamp (a PLC stamps a value when it changes)."""
        if not self._running or self._server is None:
            return
        source_ts = datetime.fromtimestamp(ts, timezone.utc)
        for name, (key, vtype) in VARIABLES.items():
            value = values[key]
            if self._last.get(name) == value:
                continue
            self._last[name] = value
            dv = ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=source_ts,
                              ServerTimestamp=datetime.now(timezone.utc))
            await self._server.write_attribute_value(self._nodes[name], dv)
