"""An aggregating asyncua server (KEPServerEX style): one endpoint, machines Machine1..MachineN
as folders under Objects, with numeric node ids that move when the "project is rebuilt".

    Objects/2:Machine1/2:Counters/2:Good      UInt32
                      /2:Counters/2:Total     UInt64
                      /2:PowerKw              Double, with an EURange property (0..200)
                      /2:Speed                Double, no EURange
                      /2:Temperatures         Double[3]
                      /2:Types/2:<Type>       one variable per scalar built-in type

`rebuild=n` registers n padding namespaces first (the namespace index moves) and numbers the
nodes from 1000*(n+1) (the numeric ids move); browse names and the namespace URI stay.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from asyncua import Server, ua

PLANT_URI = "urn:shangyun:test:plant"

SCALARS: dict[str, tuple[Any, ua.VariantType]] = {
    "Boolean": (True, ua.VariantType.Boolean),
    "SByte": (-7, ua.VariantType.SByte),
    "Byte": (200, ua.VariantType.Byte),
    "Int16": (-30000, ua.VariantType.Int16),
    "UInt16": (60000, ua.VariantType.UInt16),
    "Int32": (-2_000_000_000, ua.VariantType.Int32),
    "UInt32": (4_000_000_000, ua.VariantType.UInt32),
    "Int64": (-(2**63), ua.VariantType.Int64),
    "UInt64": (2**64 - 1, ua.VariantType.UInt64),       # beyond SQLite's int64
    "Float": (1.5, ua.VariantType.Float),
    "Double": (2.25, ua.VariantType.Double),
    "String": ("héllo", ua.VariantType.String),
    "DateTime": (datetime(2025, 3, 1, 6, 0, 0, 123456, tzinfo=timezone.utc), ua.VariantType.DateTime),
    "ByteString": (b"\x00\xffAB", ua.VariantType.ByteString),
    "LocalizedText": (ua.LocalizedText("Läuft", "de"), ua.VariantType.LocalizedText),
    "StatusCode": (ua.StatusCode(ua.StatusCodes.BadSensorFailure), ua.VariantType.StatusCode),
    "Guid": (uuid.UUID("12345678-1234-5678-1234-567812345678"), ua.VariantType.Guid),
    "QualifiedName": (ua.QualifiedName("Tool", 2), ua.VariantType.QualifiedName),
    "NodeId": (ua.NodeId(42, 2), ua.VariantType.NodeId),
}


class PlantServer:
    def __init__(self, port: int, *, machines: int = 3, rebuild: int = 0, renamed: dict[str, str] | None = None):
        self.port = port
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/test/plant"
        self.machines = machines
        self.rebuild = rebuild
        self.renamed = renamed or {}   # browse name -> the name it gets in this build
        self.server: Server | None = None
        self.nodes: dict[str, Any] = {}   # "Machine1/Counters/Good" -> node
        self.ns = 0
        self._next = 0

    def _id(self) -> ua.NodeId:
        self._next += 1
        return ua.NodeId(1000 * (self.rebuild + 1) + self._next, self.ns)

    def _name(self, name: str) -> str:
        return self.renamed.get(name, name)

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("test plant")
        await server.set_application_uri("urn:shangyun:test:aggregator")
        for i in range(self.rebuild):
            await server.register_namespace(f"urn:padding:{i}")
        self.ns = await server.register_namespace(PLANT_URI)
        for m in range(1, self.machines + 1):
            machine = await server.nodes.objects.add_object(self._id(), f"{self.ns}:{self._name(f'Machine{m}')}")
            counters = await machine.add_folder(self._id(), f"{self.ns}:{self._name('Counters')}")
            await self._var(counters, f"Machine{m}/Counters/Good", m * 10, ua.VariantType.UInt32)
            await self._var(counters, f"Machine{m}/Counters/Total", m * 11, ua.VariantType.UInt64)
            power = await self._var(machine, f"Machine{m}/PowerKw", 0.0, ua.VariantType.Double)
            await power.add_property(self._id(), "EURange", ua.Range(0.0, 200.0))
            await self._var(machine, f"Machine{m}/Speed", 0.0, ua.VariantType.Double)
            await self._var(machine, f"Machine{m}/Temperatures", [20.5, 21.5, 22.5], ua.VariantType.Double)
            if m == 1:
                types = await machine.add_folder(self._id(), f"{self.ns}:Types")
                for name, (value, vtype) in SCALARS.items():
                    await self._var(types, f"Machine1/Types/{name}", value, vtype)
        await server.start()
        self.server = server

    async def _var(self, parent: Any, key: str, value: Any, vtype: ua.VariantType) -> Any:
        node = await parent.add_variable(self._id(), f"{self.ns}:{self._name(key.rsplit('/', 1)[-1])}",
                                         ua.Variant(value, vtype))
        self.nodes[key] = node
        return node

    async def write(self, key: str, value: Any, *, vtype: ua.VariantType | None = None,
                    status: int = ua.StatusCodes.Good, source_ts: Any = None, server_ts: Any = None) -> None:
        node = self.nodes[key]
        if vtype is None:
            vtype = await node.read_data_type_as_variant_type()
        dv = ua.DataValue(ua.Variant(value, vtype), StatusCode=ua.StatusCode(status),
                          SourceTimestamp=source_ts, ServerTimestamp=server_ts)
        await node.write_value(dv)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
