"""Meters as devices (gateway/feeds.py): a Modbus power meter, polled through its profile, feeds
an MQTT machine's power_kw and energy_kwh; the samples are stored under the machine, and the
verifier's energy for the machine is the meter's. Feed configs are validated: an unknown
device or signal, or a machine signal fed twice, is a config error naming both sources."""
from __future__ import annotations

import datetime as dt
import json
import struct
import time
from typing import Any, AsyncIterator

import paho.mqtt.client as mqtt
import pytest
import yaml

from connectors.modbus import profiles
from edge.errors import ConfigError
from gateway.config import load_config
from gateway.runner import Gateway
from simulator.broker import MosquittoBroker
from tests.connectors.servers import ModbusTestServer, free_port
from tests.gateway.test_end_to_end import wait_for
from verifier.energy import UNITS_PER_KWH, analyse_energy
from verifier.reading import StoreReader
from verifier.window import Window

METER_PROFILE = "eastron-sdm630"   # input registers, floats; power in W, energy in kWh
TOPIC = "plant/m07/telemetry"


def f32(x: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", x))
    return [hi, lo]


def meter_entry(port: int, feeds: Any) -> dict[str, Any]:
    p = profiles.load(METER_PROFILE)
    return {"id": "meter-07", "type": "modbus",
            "connection": {"host": "127.0.0.1", "port": port, "poll_interval_s": 0.2,
                           "device_identification": False},
            "signals": [{"name": s.name, "address": s.address.model_dump(), "scale": s.scale}
                        for s in p.signals],
            "feeds": feeds}


def machine_entry(port: int, **extra: Any) -> dict[str, Any]:
    return {"id": "m07", "type": "mqtt", "connection": {"host": "127.0.0.1", "port": port, "topic": TOPIC},
            "signals": [{"name": "state", "address": "state"},
                        {"name": "count_total", "address": "count_total"}, *extra.get("signals", [])]}


def write(tmp_path, devices: list[dict[str, Any]]):
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(yaml.safe_dump({"gateway": {"store": {"path": str(tmp_path / "gw.db")}},
                                   "devices": devices}, sort_keys=False), encoding="utf-8")
    return cfg


FEED = {"device": "m07", "signals": {"power_kw": "power_kw", "energy_kwh": "energy_kwh"}}


def test_a_feed_config_is_loaded(tmp_path):
    loaded = load_config(write(tmp_path, [machine_entry(1883), meter_entry(502, FEED)]))
    (feed,) = loaded.feeds
    assert (feed.meter, feed.machine, dict(feed.signals)) == ("meter-07", "m07", FEED["signals"])


@pytest.mark.parametrize("devices, message", [
    ([machine_entry(1883), meter_entry(502, {"device": "m99", "signals": {"energy_kwh": "energy_kwh"}})],
     r"device 'meter-07': feeds unknown \(or disabled\) device 'm99'; devices: m07"),
    ([machine_entry(1883), meter_entry(502, {"device": "m07", "signals": {"kwh": "energy_kwh"}})],
     r"feeds m07.energy_kwh from signal 'kwh', which it does not have"),
    ([machine_entry(1883), meter_entry(502, {"device": "meter-07", "signals": {"energy_kwh": "e"}})],
     r"feeds itself"),
    ([machine_entry(1883, signals=[{"name": "energy_kwh", "address": "e"}]), meter_entry(502, FEED)],
     r"signal m07.energy_kwh is fed twice: read by 'm07' itself and fed by 'meter-07'"),
    ([machine_entry(1883), meter_entry(502, FEED),
      {**meter_entry(503, {"device": "m07", "signals": {"energy_total_kwh": "energy_kwh"}}), "id": "meter-08"}],
     r"signal m07.energy_kwh is fed twice: by meter-07.energy_kwh and by meter-08.energy_total_kwh"),
    ([machine_entry(1883), meter_entry(502, {"device": "m07", "signals": {"energy_kwh": "bad name"}})],
     r"signal names are identifiers"),
])
def test_a_wrong_feed_is_a_config_error_naming_it(tmp_path, devices, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(write(tmp_path, devices))
    assert err.value.line is not None   # and the line of the meter's feed (or its field)


@pytest.fixture
async def meter() -> AsyncIterator[ModbusTestServer]:
    server = ModbusTestServer(free_port(), size=0x160)
    for offset, value in ((0x0000, 230.1), (0x0034, 6000.0), (0x0046, 50.0), (0x0048, 100.0)):
        server.input[offset:offset + 2] = f32(value)
    await server.start()
    yield server
    await server.stop()


def publisher(port: int) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="feed-test-machine")
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


async def test_a_modbus_meter_feeds_an_mqtt_machine_and_the_verifier_counts_its_energy(tmp_path, meter):
    with MosquittoBroker() as broker:
        cfg = write(tmp_path, [machine_entry(broker.port), meter_entry(meter.port, FEED)])
        gateway = Gateway(load_config(cfg))
        await gateway.start()
        pub = publisher(broker.port)
        store = gateway.store
        try:
            def stored_energy() -> float | None:
                pub.publish(TOPIC, json.dumps({"state": "running", "count_total": int(time.time())}), qos=1)
                latest = store.latest("m07", "energy_kwh")
                return latest.value if latest is not None else None

            for kwh in (100.0, 100.5, 101.0):   # the meter's register counts up
                meter.input[0x0048:0x004A] = f32(kwh)
                await wait_for(lambda k=kwh: stored_energy() == k, f"m07.energy_kwh = {kwh} from the meter")
            power = store.latest("m07", "power_kw")
            assert power is not None and power.value == pytest.approx(6.0)
        finally:
            pub.loop_stop()
            pub.disconnect()
            await gateway.stop()     # rolls up through the current minute

    with StoreReader([str(tmp_path / "gw.db")]) as reader:
        # Stored under the machine only: the meter keeps its other signals, so no sum over
        # devices counts the energy twice.
        signals = {d.id: set(reader._stores[0].signals(d.id)) for d in reader.devices()}
        assert {"energy_kwh", "power_kw", "state"} <= signals["m07"]
        assert not {"energy_kwh", "power_kw"} & signals["meter-07"]
        assert "voltage_l1_v" in signals["meter-07"]
        today = dt.datetime.now(dt.timezone.utc).date()
        window = Window(today - dt.timedelta(days=1), today)   # the run may straddle midnight
        energy = {r.device.id: r.totals.units for cube in reader.iter_cubes(window)
                  for r in analyse_energy(cube)}
    assert energy["m07"] == pytest.approx(1.0 * UNITS_PER_KWH, rel=1e-6)
    assert energy["meter-07"] == 0


async def test_the_meters_bad_marks_go_to_the_machine_with_its_fed_signals():
    """When the meter goes offline, the supervisor's BAD marks of its fed signals must reach
    the machine, or the machine's rollups would stretch its last power over the outage."""
    from edge.model import Quality, Sample
    from gateway.feeds import Feed, Feeder

    got: list[Sample] = []

    async def emit(batch: list[Sample]) -> str:
        got.extend(batch)
        return "done"

    feeding = Feeder([Feed("meter-07", "m07", {"power_kw": "power_kw", "energy_kwh": "energy_kwh"})])
    ts = 1_700_000_000_000_000_000
    batch = [Sample("meter-07", name, ts, "", Quality.BAD) for name in ("power_kw", "energy_kwh", "voltage_l1_v")]
    assert await feeding.emit_for("meter-07", emit)(batch) == "done"   # the pipeline's result passes through
    assert {(s.device_id, s.signal, s.quality) for s in got} == {
        ("m07", "power_kw", Quality.BAD), ("m07", "energy_kwh", Quality.BAD),
        ("meter-07", "voltage_l1_v", Quality.BAD)}
    assert feeding.emit_for("m07", emit) is emit   # a device feeding nothing is not wrapped
