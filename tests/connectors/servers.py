"""Real protocol servers on loopback free ports, for the connector tests."""
from __future__ import annotations

import asyncio
import socket
import time
from datetime import datetime
from typing import Any, Awaitable, Callable

from asyncua import Server, ua
from pymodbus.constants import ExcCodes
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def eventually(cond: Callable[[], Any], *, timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Wait for `cond()` to be truthy (sync or async), failing after a deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = cond()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


class ModbusTestServer:
    """A pymodbus TCP server whose holding/input registers are plain lists the test edits.

    `holes` are [start, end) address ranges the device does not have (in both tables): a read
    touching one gets exception 2 (illegal data address), as from a real device's sparse map."""

    def __init__(self, port: int, *, size: int = 200, identity: dict[int, str] | None = None,
                 holes: list[tuple[int, int]] | None = None):
        self.port = port
        self.holes = sorted(holes or [])
        self.holding = [0] * size
        self.input = [0] * size
        self.reads = 0
        self.requests: list[tuple[int, int, int]] = []  # (function code, address, count) received
        self.busy = False  # answer every read with exception 6 (device busy) while set
        self._identity = identity
        self._server: ModbusTcpServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      current_registers: list[int], set_values: Any) -> ExcCodes | None:
        if self.busy:
            return ExcCodes.DEVICE_BUSY
        self.reads += 1
        table = self.input if function_code == 4 else self.holding
        for i in range(address, address + count):  # current_registers is the whole block
            current_registers[i - start_address] = table[i]

    def _trace(self, sending: bool, pdu: Any) -> Any:
        if not sending and pdu.function_code in (1, 2, 3, 4):
            self.requests.append((pdu.function_code, pdu.address, pdu.count))
        return pdu

    async def start(self) -> None:
        blocks, begin = [], 0
        for start, end in [*self.holes, (len(self.holding), len(self.holding))]:
            if start > begin:
                blocks.append(SimData(address=begin, count=start - begin, values=0, datatype=DataType.REGISTERS))
            begin = end
        device = SimDevice(id=1, simdata=blocks, action=self._action)
        ident = ModbusDeviceIdentification(info=self._identity) if self._identity else None
        self._server = ModbusTcpServer(device, address=("127.0.0.1", self.port), identity=ident,
                                       trace_pdu=self._trace)
        self._task = asyncio.create_task(self._server.serve_forever())
        await eventually(lambda: port_open(self.port), what="modbus server listening")

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._server = self._task = None
        await eventually(lambda: not port_open(self.port), what="modbus server closed")


NS_URI = "urn:shangyun:test"


class OpcUaTestServer:
    """An asyncua server with a few typed variables in namespace NS_URI (string node ids)."""

    VARIABLES = {"State": (1, ua.VariantType.Int32), "PowerKw": (0.0, ua.VariantType.Double),
                 "Alarm": (False, ua.VariantType.Boolean), "SerialNumber": ("SN-OPC-1", ua.VariantType.String)}

    def __init__(self, port: int, *, machine: str = "m1", pad_namespaces: int = 0):
        self.port = port
        self.machine = machine
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/test/{machine}"
        self.pad_namespaces = pad_namespaces  # extra namespaces first, so the index is not 2
        self.server: Server | None = None
        self.nodes: dict[str, Any] = {}
        self.ns = 0

    def _make_server(self) -> Server:
        return Server()

    async def _configure(self, server: Server) -> None:
        """Called after init(), before start(): a subclass adds security here."""

    async def start(self) -> None:
        server = self._make_server()
        await server.init()
        await self._configure(server)
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"test {self.machine}")
        await server.set_application_uri(f"urn:shangyun:test:{self.machine}")
        await server.set_build_info(product_uri="urn:shangyun:test:vendor", manufacturer_name="ACME",
                                    product_name="Press-9", software_version="1.2.3",
                                    build_number="42", build_date=datetime(2024, 1, 1))
        for i in range(self.pad_namespaces):
            await server.register_namespace(f"urn:padding:{i}")
        self.ns = await server.register_namespace(NS_URI)
        obj = await server.nodes.objects.add_object(self.ns, self.machine)
        for name, (value, vtype) in self.VARIABLES.items():
            node_id = ua.NodeId(f"{self.machine}.{name}", self.ns)
            self.nodes[name] = await obj.add_variable(node_id, name, ua.Variant(value, vtype))
        await server.start()
        self.server = server

    async def write(self, name: str, value: Any, *, source_ts: Any = None,
                    status: int = ua.StatusCodes.Good) -> None:
        vtype = self.VARIABLES[name][1]
        dv = ua.DataValue(ua.Variant(value, vtype), StatusCode=ua.StatusCode(status),
                          SourceTimestamp=source_ts)
        await self.nodes[name].write_value(dv)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
