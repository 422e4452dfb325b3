"""Every scalar built-in type, arrays, DateTime values, status codes and timestamp origins,
from the asyncua plant server through the source (and, for out-of-range integers, the store)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import pytest
from asyncua import ua

from connectors.opcua.values import DEVICE, GATEWAY, SERVER, stamp
from connectors.timeconv import datetime_to_ns
from edge.errors import RejectedSinkError
from edge.model import Quality
from edge.store import Store
from edge.store_sink import StoreSink
from tests.connectors.opcua_plant import SCALARS, PlantServer
from tests.connectors.servers import free_port
from tests.connectors.test_opcua_paths import M, plant_source, values
from tests.connectors.test_opcua_source import collect

STAMP = datetime(2025, 3, 1, 6, 0, 0, tzinfo=timezone.utc)
EXPECTED = {
    "Boolean": True, "SByte": -7, "Byte": 200, "Int16": -30000, "UInt16": 60000,
    "Int32": -2_000_000_000, "UInt32": 4_000_000_000, "Int64": -(2**63), "UInt64": 2**64 - 1,
    "Float": 1.5, "Double": 2.25, "String": "héllo",
    "DateTime": datetime_to_ns(SCALARS["DateTime"][0]), "ByteString": "00ff4142",
    "LocalizedText": "Läuft", "StatusCode": "BadSensorFailure",
    "Guid": "12345678-1234-5678-1234-567812345678", "QualifiedName": "2:Tool", "NodeId": "ns=2;i=42",
}


@pytest.fixture
async def plant() -> AsyncIterator[PlantServer]:
    server = PlantServer(free_port(), machines=1)
    await server.start()
    yield server
    await server.stop()


def typed(name: str) -> dict:
    return {"name": f"t_{name.lower()}", "address": f"/Objects/{M}1/Types/{name}"}


async def first_values(src, names: list[str]) -> dict:
    try:
        await src.connect()
        got = await collect(src, lambda g: {s.signal for s in g} >= set(names))
    finally:
        await src.close()
    return {s.signal: s for s in got}


async def test_every_scalar_type_becomes_a_sample_value(plant):
    src = plant_source(plant.endpoint, [typed(n) for n in SCALARS])
    got = await first_values(src, [f"t_{n.lower()}" for n in SCALARS])
    seen = {n: got[f"t_{n.lower()}"].value for n in SCALARS}
    assert seen == EXPECTED
    assert all(got[f"t_{n.lower()}"].quality is Quality.GOOD for n in SCALARS)
    assert isinstance(seen["DateTime"], int) and not isinstance(seen["DateTime"], bool)
    assert src.payload_errors == 0


async def test_datetime_values_as_text_when_configured(plant):
    src = plant_source(plant.endpoint, [typed("DateTime")], datetime_values="text")
    got = await first_values(src, ["t_datetime"])
    assert got["t_datetime"].value == "2025-03-01T06:00:00.123456+00:00"


async def test_integers_beyond_int64_are_counted_and_not_stored_the_rest_is(plant, tmp_path):
    src = plant_source(plant.endpoint, [typed("UInt64"), typed("Int64"), typed("UInt32"),
                                        {"name": "count_total", "address": f"/Objects/{M}1/Types/UInt64"}])
    got = await first_values(src, ["t_uint64", "t_int64", "t_uint32", "count_total"])
    store = Store.open(tmp_path / "s.db")
    try:
        with pytest.raises(RejectedSinkError) as err:
            await StoreSink(store).write(list(got.values()))
        assert err.value.rejected_count == 2          # t_uint64 and count_total: 2**64-1
        dead = store.dead_letter_counts()
        stored = set(store.signals("m01"))
    finally:
        store.close()
    assert sum(dead["m01"].values()) == 2, dead
    assert "int64" in " ".join(dead["m01"])
    assert stored == {"t_int64", "t_uint32"}


async def test_arrays_need_an_index(plant):
    temps = f"/Objects/{M}1/Temperatures"
    src = plant_source(plant.endpoint, [
        {"name": "t_second", "address": {"path": temps, "index": 1}},
        {"name": "t_whole", "address": temps},
        {"name": "t_beyond", "address": {"path": temps, "index": 5}},
        {"name": "t_scalar", "address": {"path": f"/Objects/{M}1/Speed", "index": 0}},
    ])
    events = []
    src.on_event = lambda kind, data: events.append(data)
    got = await first_values(src, ["t_second", "t_whole", "t_beyond", "t_scalar"])
    assert (got["t_second"].value, got["t_second"].quality) == (21.5, Quality.GOOD)
    for name in ("t_whole", "t_beyond", "t_scalar"):
        assert got[name].quality is Quality.BAD
    assert src.payload_errors == 3
    assert "array of 3" in events[0]["error"] and "index:" in events[0]["error"]


async def test_status_codes_become_quality_and_are_counted_by_code(plant):
    src = plant_source(plant.endpoint, [{"name": "power_kw", "address": f"/Objects/{M}1/PowerKw"}])
    try:
        await src.connect()
        await collect(src, lambda g: any(s.signal == "power_kw" for s in g))
        for i, (value, code) in enumerate([(5.0, ua.StatusCodes.UncertainLastUsableValue),
                                           (6.0, ua.StatusCodes.BadSensorFailure),
                                           (7.0, ua.StatusCodes.Good)]):
            await plant.write("Machine1/PowerKw", value, status=code, source_ts=STAMP + timedelta(seconds=i))
        got = await collect(src, lambda g: 7.0 in values(g, "power_kw"))
    finally:
        await src.close()
    power = [(s.value, s.quality) for s in got]
    assert power[-3:] == [(5.0, Quality.UNCERTAIN), ("", Quality.BAD), (7.0, Quality.GOOD)]
    assert src.status_codes() == {"UncertainLastUsableValue": 1, "BadSensorFailure": 1}
    assert src.status_counters() == {"status_codes": src.status_codes()}   # for status


async def test_timestamps_source_then_server_and_the_origin_is_counted(plant):
    src = plant_source(plant.endpoint, [{"name": "power_kw", "address": f"/Objects/{M}1/PowerKw"}],
                       mode="poll", poll_interval_s=0.05)
    try:
        await src.connect()
        await plant.write("Machine1/PowerKw", 1.25, source_ts=STAMP)
        got = await collect(src, lambda g: 1.25 in values(g, "power_kw"))
        written_at = datetime_to_ns(datetime.now(timezone.utc))
        await plant.write("Machine1/PowerKw", 2.5, source_ts=None)
        got += await collect(src, lambda g: 2.5 in values(g, "power_kw"))
    finally:
        await src.close()
    at = {s.value: s.ts_ns for s in got}
    assert at[1.25] == datetime_to_ns(STAMP)
    sources = src.time_sources()
    assert sources.get(DEVICE, 0) >= 1
    assert at[2.5] >= written_at     # no source timestamp: the server's (asyncua: at the write)
    assert sources.get(SERVER, 0) >= 1


def test_stamp_falls_back_to_the_gateway_clock():
    now = datetime.now(timezone.utc)
    assert stamp(ua.DataValue(ua.Variant(1.0), SourceTimestamp=STAMP))[1] == DEVICE
    assert stamp(ua.DataValue(ua.Variant(1.0), ServerTimestamp=STAMP)) == (datetime_to_ns(STAMP), SERVER)
    ts, origin = stamp(ua.DataValue(ua.Variant(1.0)))
    assert origin == GATEWAY and ts >= datetime_to_ns(now)
    assert stamp(None)[1] == GATEWAY
