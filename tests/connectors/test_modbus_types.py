"""Every register type in every byte order, written into a pymodbus server as a device would lay
it out and read back through the source; bit-of-register and string edge cases."""
from __future__ import annotations

import struct

import pytest
from pydantic import ValidationError

from connectors.modbus.config import ModbusAddress
from connectors.modbus.decode import decode
from connectors.modbus.source import ModbusSource
from edge.errors import PayloadError
from edge.model import Quality
from tests.connectors.devices import device

ORDERS = ("ABCD", "BADC", "CDAB", "DCBA")
VALUES = {
    "uint16": (">H", 0xBEEF), "int16": (">h", -12345),
    "uint32": (">I", 0xDEADBEEF), "int32": (">i", -123456789),
    "uint64": (">Q", 0xFEDCBA9876543210), "int64": (">q", -0x123456789ABCDEF),
    "float32": (">f", -1.5e-3), "float64": (">d", 6.02214076e23),
}


def lay_out(raw: bytes, order: str) -> list[int]:
    """Big-endian bytes as a device with byte order `order` puts them in its registers (the
    inverse of decode.to_bytes, written out independently)."""
    if order in ("BADC", "DCBA"):
        raw = b"".join(raw[i:i + 2][::-1] for i in range(0, len(raw), 2))
    regs = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    return regs[::-1] if order in ("CDAB", "DCBA") else regs


def expected(fmt: str, value: object) -> object:
    return struct.unpack(fmt, struct.pack(fmt, value))[0]  # float32 rounding


async def test_every_type_in_every_order_round_trips_through_a_server(modbus_server):
    signals, want, offset = [], {}, 10
    for dtype, (fmt, value) in VALUES.items():
        for order in ORDERS:
            regs = lay_out(struct.pack(fmt, value), order)
            modbus_server.holding[offset:offset + len(regs)] = regs
            name = f"{dtype}_{order}"
            signals.append({"name": name, "address": {"table": "holding", "offset": offset,
                                                      "type": dtype, "byte_order": order}})
            want[name] = expected(fmt, value)
            offset += len(regs)
    text = "温度 ok".encode()  # UTF-8, 9 bytes: padded with a NUL to 5 registers
    for order in ("ABCD", "BADC"):
        regs = lay_out(text + b"\0", "ABCD" if order == "ABCD" else "BADC")
        modbus_server.holding[offset:offset + 5] = regs
        signals.append({"name": f"string_{order}", "address": {
            "table": "holding", "offset": offset, "type": "string", "length": 5, "byte_order": order}})
        want[f"string_{order}"] = "温度 ok"
        offset += 5
    modbus_server.holding[offset] = 0x8001
    for bit, value in ((0, True), (1, False), (15, True)):
        signals.append({"name": f"bit{bit}", "address": {"table": "holding", "offset": offset,
                                                         "type": "bit", "bit": bit}})
        want[f"bit{bit}"] = value
    assert offset < 150
    src = ModbusSource(device("modbus", {"host": "127.0.0.1", "port": modbus_server.port,
                                         "device_identification": False}, signals))
    try:
        await src.connect()
        batch = {s.signal: s for s in await src.poll()}
    finally:
        await src.close()
    assert len(src.requests) == 1  # 91 contiguous registers: one read
    assert {n: s.value for n, s in batch.items()} == want
    assert all(s.quality is Quality.GOOD for s in batch.values())


@pytest.mark.parametrize("order", ORDERS)
def test_64_bit_word_order_is_the_32_bit_rule_extended(order):
    regs = lay_out(struct.pack(">Q", 0x1122334455667788), order)
    assert decode(regs, ModbusAddress(offset=0, type="uint64", byte_order=order)) == 0x1122334455667788
    assert {"ABCD": [0x1122, 0x3344, 0x5566, 0x7788], "CDAB": [0x7788, 0x5566, 0x3344, 0x1122],
            "BADC": [0x2211, 0x4433, 0x6655, 0x8877], "DCBA": [0x8877, 0x6655, 0x4433, 0x2211]}[order] == regs


def test_bit_of_a_byte_swapped_register_counts_from_the_device_word():
    assert decode([0x0100], ModbusAddress(offset=0, type="bit", bit=0, byte_order="BADC")) is True
    assert decode([0x0100], ModbusAddress(offset=0, type="bit", bit=8)) is True


def test_string_that_is_not_utf8_is_a_payload_error():
    with pytest.raises(PayloadError, match="not UTF-8"):
        decode([0xC328], ModbusAddress(offset=0, type="string", length=1))


@pytest.mark.parametrize("address,message", [
    ({"offset": 0, "type": "bit"}, "type bit needs bit"),
    ({"offset": 0, "type": "uint16", "bit": 3}, "bit applies to type bit only"),
    ({"offset": 0, "type": "bit", "bit": 16}, "less than or equal to 15"),
    ({"offset": 0, "type": "string"}, "type string needs length"),
    ({"table": "coil", "offset": 0, "type": "bit", "bit": 1}, "type must be bool"),
    ({"offset": 65533, "type": "int64"}, "runs past address 65535"),
])
def test_bad_addresses_are_rejected(address, message):
    with pytest.raises(ValidationError, match=message):
        ModbusAddress.model_validate(address)
