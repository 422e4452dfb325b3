"""Modbus settings (TCP, RTU over TCP, RTU over a serial port) and register addresses
(validation only, no I/O)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Table = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64",
                   "ascii", "string", "bit", "bool"]
Transport = Literal["tcp", "rtu-over-tcp", "rtu"]
Parity = Literal["N", "E", "O"]
ByteOrder = Literal["ABCD", "BADC", "CDAB", "DCBA"]

REGISTER_TABLES: frozenset[str] = frozenset({"holding", "input"})
BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})

# Registers each fixed-size type occupies; ascii and string take `length` registers (2 bytes each).
REGISTERS_OF: dict[str, int] = {
    "uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "uint64": 4, "int64": 4,
    "float32": 2, "float64": 4, "bit": 1, "bool": 1,
}
TEXT_TYPES: frozenset[str] = frozenset({"ascii", "string"})

# Protocol limits per read (Modbus application protocol 6.1-6.4).
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000


class ModbusAddress(BaseModel):
    """Where one value lives: `{table: holding, offset: 4, type: float32, byte_order: ABCD}`.

    `offset` is the 0-based protocol address (register 40005 is holding offset 4).
    Byte orders name the four bytes of a 32-bit value as sent big-endian (ABCD); 64-bit values
    extend the same rule (CDAB reverses the word order, BADC swaps bytes in each word, DCBA both).
    `ascii` is strict 7-bit text, `string` UTF-8 (both `length` registers, NUL/space padded);
    `bit` is bit `bit` (0 = least significant) of one register, for status words.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Table = "holding"
    offset: int = Field(ge=0, le=65535)
    type: DataType = "uint16"
    byte_order: ByteOrder = "ABCD"
    length: int | None = Field(default=None, ge=1, le=MAX_REGISTERS_PER_READ,
                               description="registers of an ascii or string value (2 bytes each)")
    bit: int | None = Field(default=None, ge=0, le=15, description="bit of the register (type bit)")

    @model_validator(mode="before")
    @classmethod
    def _default_type(cls, data: object) -> object:
        # Bits default to bool, registers to uint16: the common case needs no `type:`.
        if isinstance(data, dict) and data.get("type") is None:
            data = {**data, "type": "bool" if data.get("table") in BIT_TABLES else "uint16"}
        return data

    @model_validator(mode="after")
    def _check(self) -> "ModbusAddress":
        dtype = self.type
        if self.table in BIT_TABLES and dtype != "bool":
            raise ValueError(f"{self.table} addresses hold single bits: type must be bool, not {dtype}")
        if self.table in REGISTER_TABLES and dtype == "bool":
            raise ValueError("registers are 16 bits: use type bit with bit: N for a flag in a status "
                             "word, uint16 (0/1), or a coil/discrete table")
        if dtype in TEXT_TYPES and self.length is None:
            raise ValueError(f"type {dtype} needs length (number of registers)")
        if dtype not in TEXT_TYPES and self.length is not None:
            raise ValueError(f"length applies to ascii and string only, not {dtype}")
        if (dtype == "bit") != (self.bit is not None):
            raise ValueError("type bit needs bit: 0-15" if dtype == "bit"
                             else f"bit applies to type bit only, not {dtype}")
        if self.offset + self.count > 65536:
            raise ValueError(f"offset {self.offset} + {self.count} registers runs past address 65535")
        return self

    @property
    def count(self) -> int:
        """Registers (or bits) this value occupies."""
        if self.type in TEXT_TYPES:
            return self.length or 0
        return REGISTERS_OF[self.type]


class ModbusConnection(BaseModel):
    """One unit on a bus. Units with the same bus (`bus_key`) share one connection and take
    turns on it; `timeout_s` is this unit's own answer time, not counting its wait for its turn.

    transport: `tcp` (Modbus TCP), `rtu-over-tcp` (RTU frames through a serial server or DTU at
    host:port), `rtu` (RTU on the serial port `serial`, with baud, parity, stop_bits)."""

    model_config = ConfigDict(extra="forbid")

    transport: Transport = "tcp"
    host: str | None = Field(default=None, min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    serial: str | None = Field(default=None, min_length=1, description="serial port, e.g. /dev/ttyUSB0")
    baud: int = Field(default=9600, ge=300, le=921600)
    parity: Parity = "N"
    stop_bits: Literal[1, 2] = 1
    inter_frame_s: float | None = Field(
        default=None, ge=0, le=1,
        description="silence kept between the end of one answer and the next request on the bus; "
                    "default 3.5 character times for rtu (1.75 ms above 19200 baud), 0 otherwise")
    max_in_flight: int = Field(
        default=1, ge=1, le=64,
        description="tcp only: requests of this endpoint's units in flight at once (Modbus TCP "
                    "transaction ids match the answers); 1 for devices that take one at a time")
    device_id: int = Field(default=1, ge=0, le=255)
    poll_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)
    max_gap_registers: int = Field(
        default=10, ge=0,
        description="read across up to this many unused registers rather than split a request")
    max_registers_per_read: int = Field(default=MAX_REGISTERS_PER_READ, ge=1, le=MAX_REGISTERS_PER_READ)
    device_identification: bool = Field(
        default=True, description="ask for Read Device Identification (43/14) at connect")
    serial_object: int | None = Field(
        default=None, ge=0, le=255,
        description="43/14 object id holding the serial number (private objects are 0x80-0xFF)")
    serial_registers: ModbusAddress | None = Field(
        default=None, description="registers holding the serial number (usually type ascii)")

    @model_validator(mode="after")
    def _check_transport(self) -> "ModbusConnection":
        if self.transport == "rtu":
            if self.serial is None:
                raise ValueError("transport rtu needs serial: the port, e.g. /dev/ttyUSB0")
            if self.host is not None:
                raise ValueError("transport rtu reads a serial port: drop host, or use rtu-over-tcp")
        if self.transport != "tcp" and self.max_in_flight > 1:
            raise ValueError(f"transport {self.transport} carries one request at a time (RTU frames "
                             "have no transaction id): max_in_flight applies to tcp only")
        if self.transport != "rtu":
            if self.host is None:
                raise ValueError(f"transport {self.transport} needs host")
            if self.serial is not None:
                raise ValueError(f"serial applies to transport rtu, not {self.transport}")
        return self

    @property
    def bus_key(self) -> tuple[object, ...]:
        """What identifies the physical line: units with the same key share one connection."""
        if self.transport == "rtu":
            return ("rtu", self.serial, self.baud, self.parity, self.stop_bits)
        return (self.transport, self.host, self.port)

    @property
    def bus_name(self) -> str:
        if self.transport == "rtu":
            return f"rtu://{self.serial}@{self.baud}{self.parity}{self.stop_bits}"
        return f"{'modbus' if self.transport == 'tcp' else 'rtu+tcp'}://{self.host}:{self.port}"

    @property
    def pause_s(self) -> float:
        """Inter-frame silence: RTU's 3.5 character times (11 bits each), at least 1.75 ms
        (the spec's fixed value above 19200 baud)."""
        if self.inter_frame_s is not None:
            return self.inter_frame_s
        if self.transport != "rtu":
            return 0.0
        return max(3.5 * 11 / self.baud, 0.00175)
