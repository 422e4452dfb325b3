"""The central side is one block in gateway.yaml: a `sinks:` entry makes the running gateway
forward what it stores to VictoriaMetrics (InfluxDB's v2 write API), and status shows the sink.
A bad entry is refused with the file and line."""
from __future__ import annotations

import pytest

from edge.errors import ConfigError
from gateway.config import load_config
from gateway.runner import Gateway
from gateway.status import device_status
from simulator.factory import Factory
from simulator.machine import MachineSpec
from tests.gateway.test_end_to_end import wait_for, write_config
from tests.sinks.servers import VictoriaMetrics

pytestmark = pytest.mark.integration

MACHINE = MachineSpec(id="m01", name="Press", protocol="modbus", line="L1", serial="SN-P1",
                      profile="stamping_press", seed=9)


def with_sink(path, url: str) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(text + f"sinks:\n  - {{type: influxdb, url: '{url}', org: plant, "
                           f"bucket: shangyun, site: gz01}}\n", encoding="utf-8")


def forwarded(vm: VictoriaMetrics) -> int:
    return sum(len(s["values"]) for s in vm.export('{__name__=~"shangyun_.*", device="m01"}'))


async def test_a_sinks_block_forwards_what_the_gateway_stores(tmp_path):
    factory = Factory([MACHINE], broker=None)
    await factory.start()
    vm = VictoriaMetrics(tmp_path / "vm")
    vm.start()
    try:
        path = write_config(tmp_path, factory.manifest())
        with_sink(path, vm.url)
        gateway = Gateway(load_config(path))
        await gateway.start()
        try:
            await wait_for(lambda: forwarded(vm) > 20, "samples in VictoriaMetrics")
            (sink,) = device_status(gateway.store)["sinks"]
            assert sink["name"] == "influxdb" and sink["connected"] and sink["last_error"] is None
        finally:
            await gateway.stop()
    finally:
        vm.stop()
        await factory.stop()


def test_a_bad_sink_entry_names_its_line(tmp_path):
    path = tmp_path / "gw.yaml"
    path.write_text("devices: []\nsinks:\n  - {type: influxdb, url: 'http://x:8086', org: o}\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"gw.yaml:3: sinks\[0\].*bucket"):
        load_config(path)
