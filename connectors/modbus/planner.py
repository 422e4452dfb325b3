"""Pure request planning: which reads fetch a device's points in as few round trips as possible.

Points of the same table are sorted and merged into one read while the hole between them is at
most `max_gap` registers and the read stays within the per-read limit; a value is never split
across two reads. Same idea as Telegraf's modbus `request.go`, without its per-type copies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

from connectors.modbus.config import BIT_TABLES, MAX_BITS_PER_READ, ModbusAddress
from edge.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Field:
    key: Hashable              # what the caller wants back (a signal name)
    address: ModbusAddress


@dataclass(frozen=True, slots=True)
class Request:
    table: str
    start: int
    count: int
    fields: tuple[Field, ...]

    def slice_for(self, field: Field, values: Sequence[int]) -> list[int]:
        """The part of this read's response that belongs to `field`."""
        begin = field.address.offset - self.start
        return list(values[begin:begin + field.address.count])


def plan(fields: Sequence[Field], *, max_gap: int = 10, max_registers: int = 125) -> list[Request]:
    """Reads covering every field, grouped per table in address order."""
    requests: list[Request] = []
    for table in sorted({f.address.table for f in fields}):
        limit = MAX_BITS_PER_READ if table in BIT_TABLES else max_registers
        in_table = sorted((f for f in fields if f.address.table == table),
                          key=lambda f: (f.address.offset, f.address.count))
        group: list[Field] = []
        start = end = 0  # [start, end) of the current group
        for f in in_table:
            f_start, f_end = f.address.offset, f.address.offset + f.address.count
            if f_end - f_start > limit:
                raise ConfigError(
                    f"{f.key}: {table} value of {f_end - f_start} registers exceeds the {limit} per read")
            if group and f_start - end <= max_gap and max(end, f_end) - start <= limit:
                group.append(f)
                end = max(end, f_end)
                continue
            if group:
                requests.append(Request(table, start, end - start, tuple(group)))
            group, start, end = [f], f_start, f_end
        if group:
            requests.append(Request(table, start, end - start, tuple(group)))
    return requests
