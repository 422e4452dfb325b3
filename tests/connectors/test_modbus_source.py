import struct

import pytest

from connectors.modbus.source import ModbusSource
from edge.errors import SourceError
from edge.model import Quality
from tests.connectors.devices import SIM_STATES, device
from tests.connectors.servers import free_port


def float_regs(x: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", x))
    return [hi, lo]


def press(port: int, **conn) -> ModbusSource:
    return ModbusSource(device("modbus", {"host": "127.0.0.1", "port": port, "poll_interval_s": 0.05,
                                          "timeout_s": 1.0, "serial_object": 0x80, **conn}, [
        {"name": "state", "address": {"table": "holding", "offset": 0}, "states": SIM_STATES},
        {"name": "count_total", "address": {"table": "holding", "offset": 1}},
        {"name": "power_kw", "address": {"table": "holding", "offset": 4, "type": "float32"}},
        {"name": "energy_kwh", "address": {"table": "holding", "offset": 6, "type": "uint32"}, "scale": 0.01},
        {"name": "temp_c", "address": {"table": "input", "offset": 10, "type": "int16"}},
    ]))


async def test_identity_and_one_poll(modbus_server):
    regs = modbus_server.holding
    regs[0], regs[1] = 4, 65535
    regs[4:6] = float_regs(12.5)
    regs[6:8] = [0x0001, 0x86A0]  # 100000 -> 1000.00 kWh
    modbus_server.input[10] = 0xFFF6  # -10
    src = press(modbus_server.port, serial_registers={"table": "holding", "offset": 100,
                                                      "type": "ascii", "length": 4})
    regs[100:104] = [0x5345, 0x522D, 0x3030, 0x3720]  # "SER-007 "
    try:
        identity = await src.connect()
        assert identity.protocol == "modbus"
        assert identity.details["VendorName"] == "ACME"
        assert identity.details["ProductCode"] == "P100"
        assert identity.details["object_0x80"] == "SN-MB-1"
        # serial registers win over the 43/14 object when both are configured
        assert identity.serial_number == "SER-007"
        assert identity.fingerprint() == "modbus:SER-007"
        assert len(src.requests) == 2  # holding 0..7 and input 10
        batch = await src.poll()
    finally:
        await src.close()
    by = {s.signal: s for s in batch}
    assert by["state"].value == "fault" and by["state"].quality is Quality.GOOD
    assert by["count_total"].value == 65535
    assert by["power_kw"].value == 12.5
    assert by["energy_kwh"].value == pytest.approx(1000.0)
    assert by["temp_c"].value == -10
    assert all(s.device_id == "dev-1" and s.ts_ns > 0 for s in batch)


async def test_serial_from_identification_object(modbus_server):
    src = press(modbus_server.port)
    try:
        assert (await src.connect()).serial_number == "SN-MB-1"
    finally:
        await src.close()


async def test_samples_stream_follows_register_changes(modbus_server):
    src = press(modbus_server.port)
    await src.connect()
    seen = []
    try:
        async for batch in src.samples():
            state = next(s for s in batch if s.signal == "state")
            seen.append(state.value)
            modbus_server.holding[0] = 1 if len(seen) < 3 else 2
            if "idle" in seen:
                break
    finally:
        await src.close()
    assert "running" in seen and seen[-1] == "idle"


async def test_exception_response_marks_only_that_read_bad(modbus_server):
    events = []
    src = ModbusSource(device("modbus", {"host": "127.0.0.1", "port": modbus_server.port,
                                         "device_identification": False}, [
        {"name": "state", "address": {"table": "holding", "offset": 0}, "states": SIM_STATES},
        {"name": "beyond", "address": {"table": "holding", "offset": 1000}},  # server has 200
    ]))
    src.on_event = lambda kind, data: events.append((kind, data))
    modbus_server.holding[0] = 1
    try:
        await src.connect()
        batch = await src.poll()
        batch2 = await src.poll()
    finally:
        await src.close()
    by = {s.signal: s for s in batch}
    assert by["state"].value == "running" and by["state"].quality is Quality.GOOD
    assert by["beyond"].quality is Quality.BAD
    assert {s.signal: s.quality for s in batch2}["beyond"] is Quality.BAD
    # a refused address is reported and counted once, then not asked for again
    assert src.payload_errors == 1
    assert len(events) == 1 and events[0][0] == "payload_error"
    assert "exception code 2" in events[0][1]["error"]


async def test_decode_failure_marks_sample_bad(modbus_server):
    modbus_server.holding[4:6] = [0x7FC0, 0]  # NaN
    src = press(modbus_server.port)
    try:
        await src.connect()
        by = {s.signal: s for s in await src.poll()}
    finally:
        await src.close()
    assert by["power_kw"].quality is Quality.BAD
    assert by["state"].quality is not Quality.BAD
    assert src.payload_errors == 1


async def test_unreachable_device_is_source_error():
    src = press(free_port())
    with pytest.raises(SourceError, match="cannot connect"):
        await src.connect()
    await src.close()


async def test_server_gone_mid_stream_raises_source_error(modbus_server):
    src = press(modbus_server.port)
    await src.connect()
    polls = 0
    with pytest.raises(SourceError):
        async for _ in src.samples():
            polls += 1
            if polls == 2:
                await modbus_server.stop()
    await src.close()
    assert polls >= 2
