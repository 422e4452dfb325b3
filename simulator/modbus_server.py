"""One pymodbus TCP server per simulated machine (device id 1), register map as in ADDRESSES.md.
The only importer of pymodbus in the simulator.

pymodbus 3.16 keeps device identification (function 43/14) in a process-wide singleton, so ten
servers in one process would all answer with the last identity set. Each server here swaps the
decoded 43/14 request (through its `trace_pdu` hook) for one that answers from its own identity.
"""
from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

from pymodbus.constants import DeviceInformation, ExcCodes
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.device import DeviceInformationFactory, ModbusDeviceIdentification
from pymodbus.pdu.mei_message import ReadDeviceInformationRequest, ReadDeviceInformationResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from .machine import Machine

DEVICE_ID = 1
SERIAL_ADDRESS = 100
SERIAL_CHARS = 16
LIVE_REGISTERS = 10  # addresses 0..9


def encode_values(values: dict) -> list[int]:
    """Machine values -> holding registers 0..9 (big-endian words, ABCD)."""
    power_hi, power_lo = struct.unpack(">HH", struct.pack(">f", float(values["power_kw"])))
    energy = int(round(values["energy_kwh"] * 100)) & 0xFFFFFFFF
    return [
        values["state_code"],
        values["count_total"],
        values["count_good"],
        values["count_reject"],
        power_hi, power_lo,
        energy >> 16, energy & 0xFFFF,
        values["reason_code"],
        int(bool(values["alarm"])),
    ]


def encode_ascii(text: str, chars: int = SERIAL_CHARS) -> list[int]:
    """Space-padded ASCII, two characters per register, first character in the high byte."""
    raw = text.encode("ascii").ljust(chars, b" ")[:chars]
    return [raw[i] << 8 | raw[i + 1] for i in range(0, chars, 2)]


def identity_of(machine: Machine) -> ModbusDeviceIdentification:
    p = machine.profile
    return ModbusDeviceIdentification(
        info_name={
            "VendorName": p.vendor,
            "ProductCode": p.model,
            "MajorMinorRevision": p.firmware,
            "ProductName": f"{p.label} {p.model}",
            "ModelName": p.model,
        },
        info={0x80: machine.spec.serial},
    )


class _OwnIdentityRequest(ReadDeviceInformationRequest):
    """A 43/14 request answered from one server's identity instead of pymodbus' singleton."""

    control: Any = None

    async def datastore_update(self, context: Any, device_id: int) -> ModbusPDU:
        _ = context
        if not 0x00 <= self.object_id <= 0xFF or not 0x00 <= self.read_code <= 0x04:
            return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_VALUE)
        information = DeviceInformationFactory.get(self.control, self.read_code, self.object_id)
        if self.read_code == DeviceInformation.SPECIFIC and (
            0x07 <= self.object_id < 0x80 or not information.get(self.object_id)
        ):
            return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_ADDRESS)
        return ReadDeviceInformationResponse(
            read_code=self.read_code, information=information,
            dev_id=device_id, transaction_id=self.transaction_id,
        )


class ModbusMachineServer:
    """Serves one machine's registers and identity on host:port."""

    def __init__(self, machine: Machine, *, host: str, port: int) -> None:
        self.machine = machine
        self.host = host
        self.port = port
        self._control = SimpleNamespace(Identity=identity_of(machine))
        self._live = [0] * LIVE_REGISTERS
        self._server: ModbusTcpServer | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        serial = encode_ascii(self.machine.spec.serial)
        device = SimDevice(
            id=DEVICE_ID,
            simdata=[
                SimData(0, values=list(self._live), datatype=DataType.REGISTERS, readonly=True),
                SimData(SERIAL_ADDRESS, values=serial, datatype=DataType.REGISTERS, readonly=True),
            ],
            action=self._refresh,
        )
        server = ModbusTcpServer(device, address=(self.host, self.port), trace_pdu=self._trace_pdu)
        await server.serve_forever(background=True)
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()

    async def update(self, values: dict, ts: float) -> None:
        _ = ts  # Modbus carries no timestamps: the reader stamps values on receipt
        self._live = encode_values(values)

    async def _refresh(self, function_code: int, start_address: int, address: int, count: int,
                       registers: list[int], set_values: Any) -> None:
        # Called by pymodbus before it answers a request: copy in the present values.
        _ = function_code, address, count, set_values
        offset = 0 - start_address
        registers[offset:offset + LIVE_REGISTERS] = self._live

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending or not isinstance(pdu, ReadDeviceInformationRequest):
            return pdu
        own = _OwnIdentityRequest(read_code=pdu.read_code, object_id=pdu.object_id,
                                  dev_id=pdu.dev_id, transaction_id=pdu.transaction_id)
        own.control = self._control
        return own
