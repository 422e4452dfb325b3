"""Payloads refused as a whole land in the payload dead-letter table with their reason, through a
real Mosquitto and the running gateway; the table stays bounded and other devices keep flowing."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import paho.mqtt.publish as mqtt_publish
import pytest

from connectors.mqtt import rejects as mqtt_rejects, routing
from edge import rejects
from edge.store import Store
from gateway import api, cli
from gateway.config import load_config
from gateway.runner import Gateway
from simulator.broker import MosquittoBroker
from tests.gateway.test_end_to_end import wait_for

pytestmark = pytest.mark.integration


def write_config(tmp_path: Path, port: int) -> Path:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        f"gateway:\n  store: {{path: {tmp_path / 'gw.db'}}}\n"
        "devices:\n"
        f"  - id: m1\n    type: mqtt\n"
        f"    connection: {{host: 127.0.0.1, port: {port}, topic: t/m1, max_payload_bytes: 200,"
        " timestamp_field: null}\n"
        "    signals:\n      - {name: power_kw, address: power_kw}\n"
        f"  - id: m2\n    type: mqtt\n"
        f"    connection: {{host: 127.0.0.1, port: {port}, topic: t/m2, timestamp_field: null}}\n"
        "    signals:\n      - {name: power_kw, address: power_kw}\n", encoding="utf-8")
    return cfg


async def publish(broker: MosquittoBroker, topic: str, payload: bytes) -> None:
    await asyncio.to_thread(mqtt_publish.single, topic, payload, qos=1, hostname=broker.host, port=broker.port)


async def test_malformed_oversize_and_unmappable_payloads_are_kept_and_others_flow(tmp_path):
    with MosquittoBroker() as broker:
        gateway = Gateway(load_config(write_config(tmp_path, broker.port)))
        store = gateway.store
        await gateway.start()
        try:
            await wait_for(lambda: all(sup.state.value == "online" for sup in gateway.supervisors.values()),
                           "both devices online")
            await publish(broker, "t/m1", b"{not json \xff")
            await publish(broker, "t/m1", b'{"power_kw": 1, "pad": "' + b"x" * 400 + b'"}')
            await publish(broker, "t/m1", b'{"speed": 3}')
            for i in range(5):
                await publish(broker, "t/m2", json.dumps({"power_kw": i}).encode())
            await wait_for(lambda: len(store.rejects()) >= 3, "three payload dead letters", 90)
            await wait_for(lambda: store.sample_count(device_id="m2") >= 5, "m2's samples")
            await publish(broker, "t/m1", b'{"power_kw": 2.5}')
            await wait_for(lambda: store.latest("m1", "power_kw") is not None, "m1 still stored")
        finally:
            await gateway.stop()
        kept = {r.reason: r for r in Store.open(tmp_path / "gw.db", readonly=True).rejects()}
    assert set(kept) == {rejects.INVALID, rejects.OVERSIZE, rejects.UNMAPPABLE}
    bad, big = kept[rejects.INVALID], kept[rejects.OVERSIZE]
    assert (bad.topic, bad.device_id, bad.head, bad.size) == ("t/m1", "m1", b"{not json \xff", 11)
    assert big.size > 400 and len(big.head) == rejects.HEAD_BYTES and big.head == b'{"power_kw": 1, "pad": "' + b"x" * 232
    assert "max_payload_bytes 200" in big.detail
    assert gateway.observer.rejects.received == 3


async def test_cli_and_api_list_them(tmp_path, capsys):
    db = tmp_path / "s.db"
    store = Store.open(db)
    store.add_rejects([rejects.Reject.of(b"\x00garbage", arrived_ns=1, source="mqtt", topic="t/m1",
                                         device_id="m1", reason=rejects.INVALID, detail="not JSON"),
                       rejects.Reject.of(b"{}", arrived_ns=2, source="mqtt", topic="t/x", device_id=None,
                                         reason=rejects.UNKNOWN_DEVICE, detail="no device x")])
    store.dead_letter([1], "store: value out of range", ts_ns=3)
    store.close()

    assert cli.main(["deadletters", "--store", str(db), "--json", "--reason", rejects.INVALID]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["device_id"], r["reason"], r["head_hex"]) for r in data["payloads"]] == [
        ("m1", rejects.INVALID, b"\x00garbage".hex())]
    assert data["payload_counts"] == {"m1": {rejects.INVALID: 1}}
    assert cli.main(["deadletters", "--store", str(db)]) == 0
    text = capsys.readouterr().out
    assert "unknown_device" in text and "(unknown)" in text and "value out of range" in text

    server = await api.serve(api.create_app(str(db)), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.bound_port(server)}") as client:
            body = (await client.get("/api/deadletters", params={"device_id": ""})).json()
    finally:
        await api.stop(server)
    assert [r["reason"] for r in body["payloads"]] == [rejects.UNKNOWN_DEVICE]
    assert body["samples"] == []      # the sample dead letter's device is "?" (not a Sample)


def test_the_table_is_bounded_and_counts_stay_whole(tmp_path):
    store = Store.open(tmp_path / "s.db", dead_letter_rows=5)
    items = [rejects.Reject.of(b"x" * i, arrived_ns=i, source="mqtt", topic="t", device_id="d",
                               reason=rejects.INVALID, detail="bad") for i in range(12)]
    store.add_rejects(items[:8])
    store.add_rejects(items[8:], uncounted={("d", rejects.INVALID): 3})
    rows = store.rejects(limit=100)
    assert [r.size for r in rows] == [11, 10, 9, 8, 7]          # the newest five
    assert store.reject_counts() == {"d": {rejects.INVALID: 15}}


def test_the_queue_drops_the_oldest_and_counts_them():
    q = rejects.RejectQueue(maxlen=2)
    for i in range(5):
        q.put(rejects.Reject.of(b"", arrived_ns=i, source="mqtt", topic="t", device_id="d", reason="r", detail=""))
    items, dropped = q.take()
    assert [r.arrived_ns for r in items] == [3, 4] and dropped == {("d", "r"): 3} and q.dropped == 3


def test_a_route_reject_of_an_unknown_device_lands_in_the_table(tmp_path):
    r = routing.Reject(reason=routing.UNKNOWN_DEVICE, topic="spBv1.0/g/DDATA/n/x", payload_head=b"\x08\x01" * 200,
                       receive_ns=7, detail="device 'x' is not configured", payload_bytes=900)
    store = Store.open(tmp_path / "s.db")
    store.add_rejects([mqtt_rejects.from_route(r)])
    [row] = store.rejects(reason=rejects.UNKNOWN_DEVICE)
    assert (row.device_id, row.size, len(row.head), row.topic) == ("", 900, 256, "spBv1.0/g/DDATA/n/x")
