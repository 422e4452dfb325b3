"""Our Modbus source against a server this project did not write: modbus-serial's ServerTCP (npm),
installed by `make test-packages` under tests/peers/modbus-serial/."""
from __future__ import annotations

import struct
from typing import Iterator

import pytest

from connectors.modbus.source import ModbusSource
from edge.model import Quality
from tests.connectors.devices import device
from tests.connectors.modbus_rig import ModbusSerialPeer
from tests.connectors.servers import free_port

pytestmark = pytest.mark.integration


def words(fmt: str, value: object) -> list[int]:
    raw = struct.pack(fmt, value)
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def image() -> dict[str, dict[int, int]]:
    holding: list[int] = [
        *words(">f", 230.5),                      # 0  float32 ABCD
        *reversed(words(">f", -12.25)),           # 2  float32 CDAB
        *words(">I", 70000),                      # 4  uint32 across 65536
        *words(">h", -321),                       # 6  int16
        *reversed(words(">q", -(2 ** 40) - 7)),   # 7  int64 CDAB (word order reversed)
        *words(">Q", 2 ** 63 + 5),                # 11 uint64 ABCD
        *words(">d", 1234.5678),                  # 15 float64
        0b0000_0100_0000_0001,                    # 19 status word: bits 0 and 10
        0x5344, 0x4D36, 0x3330, 0x2000,           # 20 "SDM630 " ascii, space padded
        *words(">f", float("nan")),               # 24 NaN: must come out BAD
    ]
    # 26..29 absent: the peer answers exception 2, as a meter without those registers
    regs = dict(enumerate(holding))
    regs.update({30: 7})
    return {"holding": regs, "input": {0: 0xFFFF}, "coil": {0: 1, 1: 0}}


@pytest.fixture
def peer() -> Iterator[ModbusSerialPeer]:
    server = ModbusSerialPeer(free_port(), image())
    server.start()
    yield server
    server.stop()


SIGNALS = [
    ("f_abcd", {"offset": 0, "type": "float32"}, 230.5),
    ("f_cdab", {"offset": 2, "type": "float32", "byte_order": "CDAB"}, -12.25),
    ("u32", {"offset": 4, "type": "uint32"}, 70000),
    ("i16", {"offset": 6, "type": "int16"}, -321),
    ("i64", {"offset": 7, "type": "int64", "byte_order": "CDAB"}, -(2 ** 40) - 7),
    ("u64", {"offset": 11, "type": "uint64"}, 2 ** 63 + 5),
    ("f64", {"offset": 15, "type": "float64"}, 1234.5678),
    ("run_bit", {"offset": 19, "type": "bit", "bit": 0}, True),
    ("fault_bit", {"offset": 19, "type": "bit", "bit": 1}, False),
    ("door_bit", {"offset": 19, "type": "bit", "bit": 10}, True),
    ("model", {"offset": 20, "type": "ascii", "length": 4}, "SDM630"),
    ("u16_input", {"table": "input", "offset": 0}, 65535),
    ("coil0", {"table": "coil", "offset": 0}, True),
    ("coil1", {"table": "coil", "offset": 1}, False),
    ("after_hole", {"offset": 30}, 7),
]


async def test_every_type_decodes_from_the_peer_and_bad_input_stays_local(peer):
    signals = [{"name": n, "address": {"table": "holding", **a}} for n, a, _ in SIGNALS]
    signals += [
        {"name": "nan", "address": {"table": "holding", "offset": 24, "type": "float32"}},
        {"name": "missing", "address": {"table": "holding", "offset": 27}},
    ]
    src = ModbusSource(device("modbus", {"host": "127.0.0.1", "port": peer.port, "timeout_s": 2.0,
                                         "max_gap_registers": 10}, signals))
    try:
        identity = await src.connect()  # the peer has no 43/14: identity comes back empty, no error
        assert identity.serial_number == ""
        first = {s.signal: s for s in await src.poll()}
        second = {s.signal: s for s in await src.poll()}
    finally:
        await src.close()
    for batch in (first, second):
        for name, _, expected in SIGNALS:
            assert batch[name].quality is Quality.GOOD, name
            assert batch[name].value == expected, name
        # NaN and an address the peer lacks are BAD for those signals only
        assert batch["nan"].quality is Quality.BAD
        assert batch["missing"].quality is Quality.BAD
    assert src.refused_signals == ["missing"]
    assert src.payload_errors >= 2  # counted: the NaN each poll, the refused address once
