"""Modbus test servers beyond servers.py: a pymodbus RTU-over-TCP bus with several units (a
serial server in front of an RS-485 line), and the modbus-serial peer server (npm)."""
from __future__ import annotations

import asyncio
import json
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.connectors.servers import eventually, port_open

PEER_DIR = Path(__file__).resolve().parents[1] / "peers" / "modbus-serial"


class RtuBus:
    """A pymodbus server speaking RTU frames over TCP for `units`; the `silent` ones, and any unit
    id not served, never answer (an RS-485 unit that is off or absent: no answer, no exception).
    pymodbus answers an unknown unit with exception 4, so those answers are dropped on the wire."""

    def __init__(self, port: int, units: list[int], *, silent: tuple[int, ...] = (), size: int = 50,
                 serial: str | None = None, baud: int = 9600):
        self.port = port
        self.serial, self.baud = serial, baud  # serve this serial port instead of TCP
        self.silent = frozenset(silent)
        self.registers: dict[int, list[int]] = {u: [0] * size for u in (*units, *silent)}
        self.arrivals: list[tuple[float, int]] = []  # (monotonic time, unit) of each request
        self.answers: list[float] = []               # monotonic time each answer was sent
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._task: asyncio.Task[None] | None = None

    def _action_for(self, unit: int) -> Any:
        async def action(function_code: int, start_address: int, address: int, count: int,
                         current_registers: list[int], set_values: Any) -> None:
            regs = self.registers[unit]
            for i in range(address, address + count):
                current_registers[i - start_address] = regs[i]
        return action

    def _wire(self, sending: bool, frame: bytes) -> bytes:
        # On RS-485 a unit that is not there says nothing; pymodbus would answer exception 4.
        if sending and frame and (frame[0] in self.silent or frame[0] not in self.registers):
            return b""
        return frame

    def _trace(self, sending: bool, pdu: Any) -> Any:
        if sending:
            if pdu.dev_id not in self.silent:
                self.answers.append(time.monotonic())
        elif pdu.function_code in (1, 2, 3, 4):
            self.arrivals.append((time.monotonic(), pdu.dev_id))
        return pdu

    @property
    def connections(self) -> int:
        assert self._server is not None
        return len(self._server.active_connections)

    async def start(self) -> None:
        devices = [SimDevice(id=u, simdata=[SimData(address=0, count=len(regs), values=0,
                                                    datatype=DataType.REGISTERS)],
                             action=self._action_for(u))
                   for u, regs in self.registers.items()]
        if self.serial is not None:
            self._server = ModbusSerialServer(devices, port=self.serial, baudrate=self.baud, framer=FramerType.RTU,
                                              trace_pdu=self._trace, trace_packet=self._wire)
            self._task = asyncio.create_task(self._server.serve_forever())
            return
        self._server = ModbusTcpServer(devices, address=("127.0.0.1", self.port), framer=FramerType.RTU,
                                       trace_pdu=self._trace, trace_packet=self._wire)
        self._task = asyncio.create_task(self._server.serve_forever())
        await eventually(lambda: port_open(self.port), what="rtu bus listening")

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._server = self._task = None


class SerialPair:
    """Two connected virtual serial ports made by socat (Debian's package): what one side writes
    the other reads, as through an RS-485 adapter and its line."""

    def __init__(self, directory: Path):
        self.a, self.b = str(directory / "ttyA"), str(directory / "ttyB")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        socat = shutil.which("socat")
        if socat is None:
            raise RuntimeError("socat is not installed: run `make test-packages`")
        self._proc = subprocess.Popen([socat, f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not (Path(self.a).exists() and Path(self.b).exists()):
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.stop()
                raise RuntimeError("socat did not make the serial pair")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
            self._proc = None


class ModbusSerialPeer:
    """modbus-serial's ServerTCP (node), serving a fixed register image; an address outside the
    image is answered with exception 2. Installed by `make test-packages` (npm ci)."""

    def __init__(self, port: int, image: dict[str, dict[int, int]]):
        self.port = port
        self.image = {table: {str(k): v for k, v in values.items()} for table, values in image.items()}
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        node = shutil.which("node")
        if node is None or not (PEER_DIR / "node_modules" / "modbus-serial").is_dir():
            raise RuntimeError(f"the modbus-serial peer is not installed: run `make test-packages` "
                               f"(npm ci --prefix {PEER_DIR})")
        self._proc = subprocess.Popen([node, str(PEER_DIR / "server.js"), str(self.port), json.dumps(self.image)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # the script prints once it accepts connections
        if not line.startswith("listening"):
            self.stop()
            raise RuntimeError(f"modbus-serial peer did not start: {line!r}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


class SlowLine:
    """A TCP proxy in front of an RTU-over-TCP (or, with `tcp`, a Modbus TCP) server that holds
    each answer back: every answer
    `slow_s`, and the next answer of a unit in `late` `late_s` instead (a slow unit on a serial
    server's line). Answers are held independently, so a late one can overtake the next; the
    server behind answers at once, so each answer's content is its own request's. (pymodbus's
    own server, slowed in its action, mixes answers up between concurrent requests.)"""

    def __init__(self, target_port: int, *, slow_s: float, late_s: float, tcp: bool = False):
        self.target_port = target_port
        self.unit_at = 6 if tcp else 0   # where a frame names its unit: MBAP header or RTU address
        self.slow_s, self.late_s = slow_s, late_s
        self.late: set[int] = set()
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        loop = asyncio.get_running_loop()

        async def requests() -> None:
            while data := await client_r.read(4096):
                server_w.write(data)

        async def answers() -> None:
            while data := await server_r.read(4096):
                delay = self.slow_s
                unit = data[self.unit_at]
                if unit in self.late:
                    self.late.discard(unit)
                    delay = self.late_s
                loop.call_later(delay, lambda d=data: client_w.is_closing() or client_w.write(d))

        pumps = [asyncio.create_task(requests()), asyncio.create_task(answers())]
        self._pumps.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            server_w.close()
            client_w.close()

    async def stop(self) -> None:
        for task in self._pumps:
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def register(unit: int, address: int) -> int:
    return (unit * 1000 + address) % 65536


class Responder:
    """Answers reads of holding registers (function 3) with `register(unit, address)`; answers
    are held until `batch` requests are in, then written `chunk` bytes at a time (0: all the
    held answers in one write), so the link sees answers cut mid-header, mid-PDU, or several at
    once. `garbage` answers the next request with a frame whose length field is 0; the
    `silent` units never answer."""

    def __init__(self, *, chunk: int = 0, batch: int = 1, silent: tuple[int, ...] = ()):
        self.chunk, self.batch = chunk, batch
        self.garbage = False
        self.silent = set(silent)
        self.requests = 0
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held = b""
        held_n = 0
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                self.requests += 1
                if unit in self.silent:
                    continue
                if self.garbage:
                    held += struct.pack(">HHHB", tid, 0, 0, unit)
                else:
                    _, start, count = struct.unpack(">BHH", pdu)
                    data = struct.pack(f">{count}H", *(register(unit, start + i) for i in range(count)))
                    answer = bytes((3, len(data))) + data
                    held += struct.pack(">HHHB", tid, 0, len(answer) + 1, unit) + answer
                held_n += 1
                if held_n < self.batch:
                    continue
                step = self.chunk or len(held)
                for i in range(0, len(held), step):
                    writer.write(held[i:i + step])
                    await writer.drain()
                    await asyncio.sleep(0)   # one segment per piece, as far as loopback allows
                held, held_n = b"", 0
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
