"""The live dashboard, as a person sees it: a real gateway fed by simulated machines, its page
loaded in headless Chromium, the DOM read after the page's own JavaScript has run."""
from __future__ import annotations

import asyncio
import re
import shutil
import subprocess

import httpx
import pytest

from gateway import api
from gateway.config import load_config
from gateway.runner import Gateway
from simulator.broker import MosquittoBroker
from simulator.factory import Factory
from simulator.machine import make_specs
from tests.gateway.test_end_to_end import wait_for, write_config

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STATES = {"running", "idle", "stopped", "fault", "setup", "planned_stop"}


def chromium(url: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    # Flags from the machine notes: without the background-networking ones Chromium keeps
    # trying hosts this closed network refuses.
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}",
           "--virtual-time-budget=8000", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
async def running_gateway(tmp_path):
    with MosquittoBroker() as broker:
        specs = make_specs(3, seed=5)
        factory = Factory(specs, broker=(broker.host, broker.port))
        await factory.start()
        config = load_config(write_config(tmp_path, factory.manifest()))
        gateway = Gateway(config)
        await gateway.start()
        server = await api.serve(api.create_app(config.store_path), "127.0.0.1", 0)
        try:
            await wait_for(lambda: all(gateway.store.sample_count(device_id=s.id) > 5
                                       for s in specs), "samples from every machine")
            yield f"http://127.0.0.1:{api.bound_port(server)}", specs
        finally:
            await api.stop(server)
            await gateway.stop()
            await factory.stop()


async def test_status_api_reports_every_device(running_gateway):
    base, specs = running_gateway
    async with httpx.AsyncClient(base_url=base) as client:
        status = (await client.get("/api/status")).json()
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        one = (await client.get(f"/api/devices/{specs[0].id}")).json()
        missing = await client.get("/api/devices/nope")
    assert status["total"] == 3 and status["online"] == 3
    assert {d["id"] for d in status["devices"]} == {s.id for s in specs}
    assert all(d["machine_state"] in STATES for d in status["devices"])
    assert one["identity"]["protocol"] == specs[0].protocol
    assert missing.status_code == 404


async def test_dashboard_renders_a_tile_per_machine_in_chromium(running_gateway, tmp_path):
    assert CHROMIUM, "needs Debian's chromium: `make test` installs it (apt-get install chromium)"
    base, specs = running_gateway
    result = await asyncio.to_thread(chromium, base + "/", tmp_path, "--dump-dom")
    dom = result.stdout
    assert 'data-loaded="1"' in dom, result.stderr[-2000:]
    main = re.search(r'<main id="tiles">(.*?)</main>', dom, re.S)
    assert main, "no tiles container in the rendered page"
    tiles = re.findall(r'data-device="([^"]+)" data-state="([^"]+)"', main.group(1))
    assert {d for d, _ in tiles} == {s.id for s in specs}
    assert all(state in STATES for _, state in tiles)
    assert re.search(r'id="k-online">3/3<', dom)
    shot = tmp_path / "dashboard.png"
    await asyncio.to_thread(chromium, base + "/", tmp_path, f"--screenshot={shot}",
                            "--window-size=1280,800")
    assert shot.exists() and shot.stat().st_size > 10_000
