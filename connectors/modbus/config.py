"""Modbus TCP settings and register addresses (validation only, no I/O)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Table = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["uint16", "int16", "uint32", "int32", "float32", "float64", "ascii", "bool"]
ByteOrder = Literal["ABCD", "BADC", "CDAB", "DCBA"]

REGISTER_TABLES: frozenset[str] = frozenset({"holding", "input"})
BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})

# Registers each fixed-size type occupies; ascii takes `length` registers (2 characters each).
REGISTERS_OF: dict[str, int] = {
    "uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2, "float64": 4, "bool": 1,
}

# Protocol limits per read (Modbus application protocol 6.1-6.4).
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000


class ModbusAddress(BaseModel):
    """Where one value lives: `{table: holding, offset: 4, type: float32, byte_order: ABCD}`.

    `offset` is the 0-based protocol address (register 40005 is holding offset 4).
    Byte orders name the four bytes of a 32-bit value as sent big-endian (ABCD); 64-bit values
    extend the same rule (CDAB swaps word order, BADC swaps bytes in each word, DCBA both).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Table = "holding"
    offset: int = Field(ge=0, le=65535)
    type: DataType = "uint16"
    byte_order: ByteOrder = "ABCD"
    length: int | None = Field(default=None, ge=1, le=MAX_REGISTERS_PER_READ,
                               description="registers of an ascii value (2 characters each)")

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
            raise ValueError("registers are 16 bits: use uint16 (0/1) for a flag, or a coil/discrete table")
        if dtype == "ascii" and self.length is None:
            raise ValueError("type ascii needs length (number of registers)")
        if dtype != "ascii" and self.length is not None:
            raise ValueError(f"length applies to ascii only, not {dtype}")
        if self.offset + self.count > 65536:
            raise ValueError(f"offset {self.offset} + {self.count} registers runs past address 65535")
        return self

    @property
    def count(self) -> int:
        """Registers (or bits) this value occupies."""
        if self.type == "ascii":
            return self.length or 0
        return REGISTERS_OF[self.type]


class ModbusConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
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
