"""The three sources, under their supervisors, against the real simulator (simulator/factory.py),
configured from each connector's sample.yaml with the simulator's manifest."""
import asyncio
import copy
import random
from pathlib import Path

import pytest
import yaml

import connectors
from connectors import registry
from connectors.supervisor import DeviceSupervisor, LinkState, stop_all
from edge.model import Quality, State
from tests.connectors.devices import device
from tests.connectors.servers import eventually

simulator = pytest.importorskip("simulator.factory")
from simulator.machine import make_specs  # noqa: E402

pytestmark = [pytest.mark.integration]

SAMPLE_ID = {"modbus": "press-01", "opcua": "lathe-01", "mqtt": "oven-01"}


def device_for(entry: dict, broker: dict | None):
    protocol = entry["protocol"]
    text = (Path(connectors.__file__).parent / protocol / "sample.yaml").read_text()
    (block,) = yaml.safe_load(text.replace(SAMPLE_ID[protocol], entry["id"]))
    conn = copy.deepcopy(block["connection"])
    if protocol == "opcua":
        conn.update(endpoint=entry["endpoint"], publishing_interval_ms=100)
    elif protocol == "modbus":
        conn.update(host=entry["host"], port=entry["port"], device_id=entry["device_id"], poll_interval_s=0.1)
    else:
        prefix = entry["topic_prefix"].rstrip("/")
        conn.update(host=broker["host"], port=broker["port"], topic=f"{prefix}/telemetry",
                    identity_topic=f"{prefix}/identity")
    return device(protocol, conn, block["signals"], device_id=entry["id"])


class Sink:
    def __init__(self):
        self.samples, self.events, self.online = [], [], {}

    async def emit(self, batch):
        self.samples.extend(batch)

    def on_online(self, device_id, identity, ts_ns):
        self.online[device_id] = identity

    def on_offline(self, device_id, error, ts_ns):
        pass

    def on_event(self, device_id, kind, data, ts_ns):
        self.events.append((device_id, kind, data))


async def test_every_protocol_against_the_simulator(broker):
    factory = simulator.Factory(make_specs(3), broker=("127.0.0.1", broker.port), tick_s=0.2)
    await factory.start()
    sink, tasks, sups = Sink(), [], {}
    try:
        manifest = factory.manifest()
        machines = manifest["machines"]
        assert sorted(m["protocol"] for m in machines) == ["modbus", "mqtt", "opcua"]
        for entry in machines:
            src = registry.make_source(device_for(entry, manifest["broker"]))
            sup = DeviceSupervisor(src, sink.emit, sink, backoff_initial_s=0.1, backoff_max_s=0.5,
                                   rng=random.Random(0))
            sups[entry["id"]] = sup
            tasks.append(asyncio.create_task(sup.run()))

        def every_signal_seen():
            seen = {(s.device_id, s.signal) for s in sink.samples if s.quality is Quality.GOOD}
            return all((m["id"], name) in seen for m in machines
                       for name in ("state", "count_total", "power_kw", "energy_kwh", "alarm"))

        await eventually(every_signal_seen, timeout_s=30, what="every signal of every machine")
        for entry in machines:
            identity = sink.online[entry["id"]]
            assert identity.serial_number == entry["serial"], entry["protocol"]
            assert entry["serial"] in identity.fingerprint() or identity.certificate_sha256
        states = {s.value for s in sink.samples if s.signal == "state" and s.quality is Quality.GOOD}
        assert states <= {st.value for st in State}
        assert sink.events == []
        assert all(s.ts_ns > 1_600_000_000 * 10**9 for s in sink.samples)

        # One machine off the network and back: offline with BAD samples, then online again.
        victim = next(m["id"] for m in machines if m["protocol"] == "modbus")
        await factory.stop_machine(victim)
        await eventually(lambda: sups[victim].state is LinkState.OFFLINE, timeout_s=15, what="offline")
        assert any(s.device_id == victim and s.quality is Quality.BAD for s in sink.samples)
        await factory.start_machine(victim)
        await eventually(lambda: sups[victim].state is LinkState.ONLINE, timeout_s=15, what="online again")
        assert sups[victim].reconnects == 1
    finally:
        assert await stop_all(dict(zip(sups.values(), tasks))) == []
        await factory.stop()
