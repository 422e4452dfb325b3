from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from edge.model import DeviceSpec
from edge.store import Store

from .servers import VictoriaMetrics, find_victoria_metrics

DEVICES = [DeviceSpec(id=f"m{i:02d}", name=f"Machine {i}", protocol="modbus", line="L1",
                      connection={}, signals=())
           for i in range(5)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "edge.db")
    for d in DEVICES:
        s.upsert_device(d)
    yield s
    s.close()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    if find_victoria_metrics() is None:
        pytest.fail("victoria-metrics is not installed (make test-packages installs it)")
    vm = VictoriaMetrics(tmp_path / "vm")
    vm.start()
    yield vm
    vm.stop()
