import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.modbus.config import ModbusAddress
from connectors.modbus.decode import block_decoder, decode
from edge.errors import PayloadError


def addr(type_: str, order: str = "ABCD", **kw) -> ModbusAddress:
    return ModbusAddress(table="holding", offset=0, type=type_, byte_order=order, **kw)


@pytest.mark.parametrize("type_,order,registers,expected", [
    ("uint16", "ABCD", [0x1234], 0x1234),
    ("uint16", "BADC", [0x1234], 0x3412),
    ("uint16", "CDAB", [0x1234], 0x1234),
    ("uint16", "DCBA", [0x1234], 0x3412),
    ("int16", "ABCD", [0xFFFE], -2),
    ("uint32", "ABCD", [0x1122, 0x3344], 0x11223344),
    ("uint32", "CDAB", [0x3344, 0x1122], 0x11223344),
    ("uint32", "BADC", [0x2211, 0x4433], 0x11223344),
    ("uint32", "DCBA", [0x4433, 0x2211], 0x11223344),
    ("int32", "ABCD", [0xFFFF, 0xFFFF], -1),
    ("int32", "CDAB", [0xFFFE, 0xFFFF], -2),
    ("float32", "ABCD", [0x3FC0, 0x0000], 1.5),
    ("float32", "CDAB", [0x0000, 0x3FC0], 1.5),
    ("float32", "BADC", [0xC03F, 0x0000], 1.5),
    ("float32", "DCBA", [0x0000, 0xC03F], 1.5),
    ("float32", "ABCD", [0xC2F6, 0xE979], pytest.approx(-123.456, abs=1e-4)),
    ("float64", "ABCD", [0x3FF0, 0, 0, 0], 1.0),
    ("float64", "CDAB", [0, 0, 0, 0x3FF0], 1.0),
    ("float64", "BADC", [0xF03F, 0, 0, 0], 1.0),
    ("float64", "DCBA", [0, 0, 0, 0xF03F], 1.0),
])
def test_numbers_in_every_byte_order(type_, order, registers, expected):
    assert decode(registers, addr(type_, order)) == expected


@pytest.mark.parametrize("order,registers", [
    ("ABCD", [0x534E, 0x2D31, 0x2020]),
    ("BADC", [0x4E53, 0x312D, 0x2020]),
])
def test_ascii_strips_padding_and_honours_byte_swap(order, registers):
    assert decode(registers, addr("ascii", order, length=3)) == "SN-1"


def test_ascii_trailing_nuls_stripped():
    assert decode([0x4142, 0x0000], addr("ascii", length=2)) == "AB"


@pytest.mark.parametrize("address,registers,message", [
    (addr("float32"), [0x3FC0], "needs 2 registers"),
    (addr("uint16"), [0x10000], "not a 16-bit word"),
    (addr("ascii", length=1), [0x41FF], "non-ASCII"),
    (addr("float32"), [0x7FC0, 0x0000], "nan"),
    (addr("float64"), [0x7FF0, 0, 0, 0], "inf"),
])
def test_failures_are_payload_errors(address, registers, message):
    with pytest.raises(PayloadError, match=message):
        decode(registers, address)


# block_decoder (the source's per-read fast path) must agree with decode on every input.
_TYPES = ["uint16", "int16", "uint32", "int32", "float32", "uint64", "int64", "float64", "bit"]


@settings(max_examples=300, deadline=None)
@given(dtype=st.sampled_from(_TYPES), order=st.sampled_from(["ABCD", "BADC", "CDAB", "DCBA"]),
       lead=st.integers(0, 3),
       words=st.lists(st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0x7FC0, 0x7F80, -1, 0x10000])),
                      min_size=8, max_size=8))
def test_block_decoder_agrees_with_decode(dtype, order, lead, words):
    address = ModbusAddress(table="holding", offset=10, type=dtype, byte_order=order,
                            **({"bit": 3} if dtype == "bit" else {}))
    own = words[lead:lead + address.count]
    try:
        expected: object = decode(own, address)
    except PayloadError as err:
        expected = ("error", str(err))
    try:
        got: object = block_decoder(address)(words, lead)
    except PayloadError as err:
        got = ("error", str(err))
    if isinstance(expected, float) and isinstance(got, float):
        assert struct.pack(">d", got) == struct.pack(">d", expected)
    else:
        assert got == expected and type(got) is type(expected)
