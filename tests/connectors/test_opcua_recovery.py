"""A killed and restarted asyncua server (in its own process): data resumes without duplicates,
and the outage costs one warning and the recovery one info line, library tracebacks none."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sys
from collections import Counter
from pathlib import Path

from connectors.logs import quiet_libraries
from connectors.opcua.source import OpcUaSource
from connectors.supervisor import DeviceSupervisor, LinkState, stop_all
from edge.model import Quality
from tests.connectors.devices import device
from tests.connectors.servers import NS_URI, eventually, free_port
from tests.connectors.test_quiet_logs import library_logging, own_lines  # noqa: F401 (fixture)
from tests.connectors.test_supervisor import Recorder

ROOT = Path(__file__).resolve().parents[2]


class ChildServer:
    def __init__(self, port: int):
        self.port = port
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/test/m1"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.connectors.opcua_child", str(self.port), cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.wait_for(self._expect("READY"), 60)

    async def _expect(self, prefix: str) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = (await self.proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError("the asyncua child server exited")
            if line.startswith(prefix):
                return

    async def write(self, name: str, value: float) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"set": name, "value": value}) + "\n").encode())
        await self.proc.stdin.drain()
        await asyncio.wait_for(self._expect(f"OK {name}"), 20)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()
        self.proc = None

    async def stop(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
            self.proc = None


async def test_killed_asyncua_server_one_line_per_outage_and_recovery(library_logging, caplog):  # noqa: F811
    quiet_libraries(False)     # as the gateway runs
    caplog.set_level(logging.INFO)
    server = ChildServer(free_port())
    await server.start()
    src = OpcUaSource(device("opcua", {"endpoint": server.endpoint, "publishing_interval_ms": 50,
                                       "watchdog_interval_s": 0.3, "timeout_s": 3.0}, [
        {"name": "power_kw", "address": f"nsu={NS_URI};s=m1.PowerKw"},
        {"name": "alarm", "address": f"nsu={NS_URI};s=m1.Alarm"},
    ], device_id="ua-1"))
    rec = Recorder()
    sup = DeviceSupervisor(src, rec.emit, rec, backoff_initial_s=0.05, backoff_max_s=0.5, rng=random.Random(2))
    task = asyncio.create_task(sup.run())
    try:
        await eventually(lambda: sup.state is LinkState.ONLINE, timeout_s=30, what="online")
        for value in (1.5, 2.5):
            await server.write("PowerKw", value)
            await eventually(lambda v=value: any(s.value == v for s in rec.samples), timeout_s=20, what=f"{value}")
        await server.kill()
        await eventually(lambda: sup.state is LinkState.OFFLINE, timeout_s=30, what="offline")
        await asyncio.sleep(1.0)   # several failed retries while it is down: still one line
        await server.start()
        await eventually(lambda: sup.state is LinkState.ONLINE, timeout_s=30, what="back online")
        for value in (3.5, 4.5):
            await server.write("PowerKw", value)
            await eventually(lambda v=value: any(s.value == v for s in rec.samples), timeout_s=20, what=f"{value}")
    finally:
        assert await stop_all({sup: task}, timeout_s=10) == []
        await server.stop()
    good = [(s.signal, s.ts_ns, s.value) for s in rec.samples if s.quality is Quality.GOOD]
    assert [k for k, n in Counter(good).items() if n > 1] == []
    assert [v for sig, _, v in good if sig == "power_kw" and v in (1.5, 2.5, 3.5, 4.5)] == [1.5, 2.5, 3.5, 4.5]
    assert sup.reconnects >= 1
    link = own_lines(caplog, "ua-1")
    assert [level for level, _ in link] == ["WARNING", "INFO"], link
    assert "offline" in link[0][1] and "back online" in link[1][1]
    library = [r for r in caplog.records if not r.name.startswith("shangyun") and r.levelno >= logging.INFO]
    assert library == [], [(r.name, r.getMessage()) for r in library]
    assert "Traceback" not in caplog.text
