"""The witness service (real uvicorn on loopback) and the gateway's sender: receipts a bundle
check accepts, a gateway clock set back a month caught through them, a witness that is down
and comes back getting every checkpoint, none lost, none sent twice."""
from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time

import httpx
import pytest

from edge.bundle import CheckOptions, check_path
from edge.evidence_key import EvidenceKey
from edge.store import Store
from gateway import api
from gateway.witness import WitnessSender, create_app
from tests.edge.bundle_factory import DAY_NS, MIN_NS, Members, export, forge_chain, make_store

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def witness_at(data_dir, port: int = 0):
    app = create_app(data_dir)
    server = await api.serve(app, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{api.bound_port(server)}", app.state.key
    finally:
        await api.stop(server)
        app.state.log.close()


def live_walls(offset_ns: int = 0):
    """Checkpoints five minutes apart ending now (+ offset): a gateway checkpointing live."""
    now = time.time_ns() + offset_ns
    return lambda k: now - (3 - k) * 5 * MIN_NS


async def send_all(path, url: str, **kw) -> WitnessSender:
    with Store.open(path) as store:
        sender = WitnessSender(store, url, **kw)
        async with httpx.AsyncClient() as http:
            await sender.send_pending(http)
    return sender


async def test_receipts_from_the_witness_check_clean_in_the_bundle(tmp_path):
    made = make_store(tmp_path / "gw", wall_ns=live_walls())
    async with witness_at(tmp_path / "w") as (url, wkey):
        sender = await send_all(made.path, url)
    assert sender.counters["sent"] == 3
    with Store.open(made.path, readonly=True) as store:
        assert sorted(r.checkpoint_seq for r in store.receipts()) == [1, 2, 3]
    r = check_path(str(export(made, tmp_path / "b.zip")),
                   CheckOptions(key=made.key.fingerprint, witness_keys=(wkey.public_pem,)))
    assert r.intact, r.problems
    assert r.witnessed == 3 and r.witness_checked


async def test_a_gateway_clock_set_back_a_month_is_detected_through_the_witness(tmp_path):
    made = make_store(tmp_path / "gw", wall_ns=live_walls(-30 * DAY_NS))
    async with witness_at(tmp_path / "w") as (url, wkey):
        await send_all(made.path, url)
    r = check_path(str(export(made, tmp_path / "b.zip")),
                   CheckOptions(witness_keys=(wkey.public_pem,)))
    clock = [p for p in r.problems if p.code == "clock"]
    assert len(clock) == 1 and "set back" in clock[0].message and "30.0 days" in clock[0].message
    assert not r.intact


async def test_receipts_from_another_witness_are_named(tmp_path):
    made = make_store(tmp_path / "gw", wall_ns=live_walls())
    async with witness_at(tmp_path / "trusted") as (_, trusted), \
            witness_at(tmp_path / "other") as (other_url, other):
        await send_all(made.path, other_url)
    r = check_path(str(export(made, tmp_path / "b.zip")),
                   CheckOptions(witness_keys=(trusted.public_pem,)))
    assert {p.code for p in r.problems} == {"witness"}
    assert any(other.fingerprint[8:12] in p.message for p in r.problems)


async def test_receipts_expose_a_bundle_forged_with_another_key(tmp_path):
    made = make_store(tmp_path / "gw", wall_ns=live_walls())
    async with witness_at(tmp_path / "w") as (url, wkey):
        await send_all(made.path, url)
    m = Members(export(made, tmp_path / "b.zip"))
    forge_chain(m, EvidenceKey.generate())
    r = check_path(str(m.write(tmp_path / "forged.zip")),
                   CheckOptions(witness_keys=(wkey.public_pem,)))
    assert [p.where for p in r.problems if p.code == "receipt"] == \
        [f"receipt for checkpoint {k}" for k in (1, 2, 3)]


async def test_a_witness_down_then_up_gets_every_checkpoint_once(tmp_path):
    made = make_store(tmp_path / "gw", wall_ns=live_walls())
    with socket.socket() as s:          # a port nobody listens on, until the witness starts
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    with Store.open(made.path) as store:
        sender = WitnessSender(store, url, poll_s=0.2, min_backoff_s=0.05, max_backoff_s=0.2,
                               timeout_s=2)
        task = asyncio.create_task(sender.run(stop))
        try:
            await until(lambda: sender.counters["failed"] >= 3, "the sender to fail while down")
            assert store.receipts() == []
            async with witness_at(tmp_path / "w", port) as (_, wkey):
                await until(lambda: len(store.receipts()) == 3, "receipts after the witness is up")
                key = EvidenceKey.load(made.path.parent / "evidence.key")
                store.checkpoint(key, now_ns=time.time_ns())
                sender.notify()
                await until(lambda: len(store.receipts()) == 4, "the new checkpoint's receipt")
                async with httpx.AsyncClient() as http:   # a restarted gateway sends nothing again
                    again = WitnessSender(store, url, witness_pem=wkey.public_pem)
                    assert await again.send_pending(http) == 0
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        assert sorted(r.checkpoint_seq for r in store.receipts()) == [1, 2, 3, 4]
        assert {r.witness_fingerprint for r in store.receipts()} == {wkey.fingerprint}


async def until(cond, what: str, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_the_witness_answers_the_same_receipt_and_refuses_a_rewritten_checkpoint(tmp_path):
    made = make_store(tmp_path / "gw", days=1, wall_ns=live_walls())
    with Store.open(made.path, readonly=True) as store:
        cp = store.checkpoints()[0]
    pem = made.key.public_pem.decode()
    post = {"checkpoint": cp.body, "signature": cp.signature.hex(), "public_key": pem}
    async with witness_at(tmp_path / "w") as (url, _), httpx.AsyncClient(base_url=url) as c:
        first = (await c.post("/v1/checkpoints", json=post)).json()
        again = (await c.post("/v1/checkpoints", json=post)).json()
        assert first == again                      # a retry never moves the witnessed time
        rewritten = {**cp.body, "wall_ns": cp.wall_ns + 1}
        text = json.dumps(rewritten, sort_keys=True, separators=(",", ":")).encode()
        r = await c.post("/v1/checkpoints", json={**post, "checkpoint": rewritten,
                                                  "signature": made.key.sign(text).hex()})
        assert r.status_code == 409 and "rewritten" in r.text
        bad = await c.post("/v1/checkpoints", json={**post, "signature": "00" * 64})
        assert bad.status_code == 400 and "bad signature" in bad.text
        other = EvidenceKey.generate().public_pem.decode()
        assert (await c.post("/v1/checkpoints", json={**post, "public_key": other})).status_code \
            == 400
        assert (await c.post("/v1/checkpoints", content=b"{not json")).status_code == 400
        key = (await c.get("/v1/key")).json()
        assert key["fingerprint"] == first["receipt"]["witness_key"]
        latest = await c.get("/v1/checkpoints/latest", params={"gateway_key": cp.key_fingerprint})
        assert latest.json() == {"seq": 1, **first}
        nobody = await c.get("/v1/checkpoints/latest", params={"gateway_key": "ed25519:00"})
        assert nobody.status_code == 404


async def test_each_checkpoint_of_the_checkpointer_reaches_the_witness(tmp_path):
    from gateway.config import EvidenceSettings
    from gateway.evidence import Checkpointer
    from gateway.witness import start_sender

    made = make_store(tmp_path / "gw", days=1, wall_ns=live_walls())
    async with witness_at(tmp_path / "w") as (url, wkey):
        (tmp_path / "w.pem").write_bytes(wkey.public_pem)
        with Store.open(made.path) as store:
            checkpointer = Checkpointer(store, EvidenceSettings())
            task = start_sender(store, checkpointer, url, key_file=tmp_path / "w.pem")
            try:
                await until(lambda: len(store.receipts()) == 1, "the existing checkpoint")
                cp = await checkpointer.checkpoint()
                await until(lambda: cp.seq in {r.checkpoint_seq for r in store.receipts()},
                            "the new checkpoint's receipt")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            assert task.sender.counters["sent"] == 2


async def test_a_gateway_configured_with_a_witness_gets_its_checkpoints_receipted(tmp_path):
    """The `gateway.evidence.witness` block wires the sender into `shangyun run`."""
    from gateway.config import load_config
    from gateway.runner import Gateway

    async with witness_at(tmp_path / "w") as (url, wkey):
        (tmp_path / "w.pem").write_bytes(wkey.public_pem)
        cfg = tmp_path / "gw.yaml"
        cfg.write_text(f"""
gateway:
  store: {{path: {tmp_path / 'gw.db'}}}
  evidence:
    checkpoint_s: 0.5
    witness: {{url: "{url}", key_file: {tmp_path / 'w.pem'}}}
devices: []
""", encoding="utf-8")
        gw = Gateway(load_config(cfg))
        stop = asyncio.Event()
        run = asyncio.create_task(gw.run(stop))
        try:
            await until(lambda: gw.store is not None and len(gw.store.receipts()) >= 2,
                        "receipts for the gateway's checkpoints")
        finally:
            stop.set()
            await asyncio.wait_for(run, 60)
    with Store.open(tmp_path / "gw.db", readonly=True) as store:
        receipts = store.receipts()
        assert {r.witness_fingerprint for r in receipts} == {wkey.fingerprint}
        assert {r.checkpoint_seq for r in receipts} <= {c.seq for c in store.checkpoints()}
