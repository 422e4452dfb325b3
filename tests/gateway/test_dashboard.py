"""The live dashboard, as a person sees it: a real gateway fed by simulated machines, its page
loaded in headless Chromium, the DOM read after the page's own JavaScript has run."""
from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess

import httpx
import pytest

from edge.model import NS_PER_S, Sample, now_ns
from edge.rejects import Reject
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
async def live_plant(tmp_path):
    """(dashboard URL, machine specs, factory, gateway) of a running gateway with 3 machines."""
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
            yield f"http://127.0.0.1:{api.bound_port(server)}", specs, factory, gateway
        finally:
            await api.stop(server)
            await gateway.stop()
            await factory.stop()


@pytest.fixture
def running_gateway(live_plant):
    return live_plant[:2]


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


async def test_an_offline_machine_and_a_nan_reading_do_not_break_the_page(live_plant, tmp_path):
    assert CHROMIUM, "needs Debian's chromium: `make test` installs it (apt-get install chromium)"
    base, specs, factory, gateway = live_plant
    gone, broken = specs[0].id, specs[1].id
    await factory.stop_machine(gone)
    await wait_for(lambda: not gateway.store.device(gone).online, f"{gone} to go offline")
    # A register reading NaN, newer than anything the machine will send during the test.
    gateway.store.write_samples([Sample(broken, "power_kw", now_ns() + 600 * NS_PER_S, math.nan)])
    async with httpx.AsyncClient(base_url=base) as client:
        resp = await client.get("/api/status")
    assert resp.status_code == 200, resp.text[:500]
    status = json.loads(resp.text, parse_constant=lambda c: pytest.fail(f"{c} in /api/status"))
    by_id = {d["id"]: d for d in status["devices"]}
    assert by_id[gone]["state"] == "offline" and by_id[gone]["last_sample"] is not None
    assert by_id[broken]["power_kw"] is None and "power_kw" in by_id[broken]["error"]
    result = await asyncio.to_thread(chromium, base + "/", tmp_path, "--dump-dom")
    dom = result.stdout
    assert 'data-loaded="1"' in dom, result.stderr[-2000:]
    main = re.search(r'<main id="tiles">(.*?)</main>', dom, re.S)
    assert main, "no tiles container in the rendered page"
    tiles = dict(re.findall(r'data-device="([^"]+)" data-state="([^"]+)"', main.group(1)))
    assert set(tiles) == {s.id for s in specs}
    assert tiles[gone] == "offline"
    assert tiles[broken] in STATES and tiles[specs[2].id] in STATES
    assert re.search(r'id="k-online">2/3<', dom)


async def test_a_machine_sending_payloads_that_are_refused_says_so_on_its_tile(live_plant, tmp_path):
    """Payloads a connector refused never become samples, so nothing else on the page would
    show them: the tile counts them (the API's `payload_rejects_total`), and only on the
    machine that sent them."""
    assert CHROMIUM, "needs Debian's chromium: `make test` installs it (apt-get install chromium)"
    base, specs, _factory, gateway = live_plant
    noisy = specs[0].id
    gateway.store.add_rejects([Reject.of(b"{not json", arrived_ns=now_ns(), source="mqtt",
                                         topic=f"plant/{noisy}", device_id=noisy, reason="json",
                                         detail="Expecting property name") for _ in range(3)])
    result = await asyncio.to_thread(chromium, base + "/", tmp_path, "--dump-dom")
    dom = result.stdout
    assert 'data-loaded="1"' in dom, result.stderr[-2000:]
    tiles = dict(re.findall(r'<section class="tile" data-device="([^"]+)"(.*?)</section>', dom, re.S))
    assert "payload rejects 3" in tiles[noisy], tiles[noisy][-600:]
    assert all("payload rejects" not in tiles[s.id] for s in specs[1:])
