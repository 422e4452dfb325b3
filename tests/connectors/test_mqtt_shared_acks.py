"""Acknowledgements on a shared connection (connectors/mqtt/shared.py), real Mosquitto: what a
drain settles by itself (messages that produced no sample) and what a device's commit settles
leaves in few socket writes, and the broker takes every acknowledgement."""
from __future__ import annotations

import asyncio
import contextlib
import json

import paho.mqtt.client as mqtt

from connectors.mqtt.client import BufferedClient
from connectors.mqtt.shared import SharedConnections
from tests.connectors.devices import device
from tests.connectors.servers import eventually

N = 300


def devices(port: int, client_id: str, receive_maximum: int) -> list:
    conn = {"host": "127.0.0.1", "port": port, "topic": "plant/{device}/telemetry", "client_id": client_id,
            "receive_maximum": receive_maximum, "stale_after_s": None}
    return [device("mqtt", conn, [{"name": "count_total", "address": "n"}], device_id=f"m{i}") for i in range(3)]


def publish_all(port: int, messages: list[tuple[str, bytes]]) -> None:
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-shared-acks-pub")
    pub.max_inflight_messages_set(len(messages))
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        for info in [pub.publish(topic, payload, qos=1) for topic, payload in messages]:
            info.wait_for_publish(30)
    finally:
        pub.disconnect()
        pub.loop_stop()


class Writes:
    """Socket writes of paho's clients that start with a PUBACK; the real socket still sends them."""

    def __init__(self, monkeypatch) -> None:
        self.pubacks = 0
        send = BufferedClient._sock_send

        def counting_send(client, buf):
            self.pubacks += bytes(buf[:1]) == b"\x40"
            return send(client, buf)

        monkeypatch.setattr(BufferedClient, "_sock_send", counting_send)


async def run_once(port: int, client_id: str, *, ack: bool, expect: int = 1,
                   receive_maximum: int = 1000) -> tuple[int, int]:
    """Connect the shared connection and take what the broker has for it (`expect` messages at
    least, or what came within the deadline): (messages, samples)."""
    conns = SharedConnections()
    sources = [conns.source(d) for d in devices(port, client_id, receive_maximum)]
    conn = conns.connections[0]
    samples = 0

    async def consume(src) -> None:
        nonlocal samples
        await src.connect()
        async for batch in src.samples():
            samples += len(batch)
            if ack and batch.ack is not None:
                batch.ack()

    tasks = [asyncio.create_task(consume(s)) for s in sources]
    try:
        await eventually(lambda: conn.up, what="connected")
        if ack:
            with contextlib.suppress(AssertionError):   # fewer than expected: the caller's assert says so
                await eventually(lambda: conn.messages >= expect and conn.acks.in_flight == 0
                                 and not conn._client.want_write(), timeout_s=10, what="messages acknowledged")
        return conn.messages, samples
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await conns.close()


async def test_a_queued_burst_is_acknowledged_in_few_writes_and_not_sent_again(broker, monkeypatch):
    await run_once(broker.port, "t-shared-acks", ack=False)     # the session: the broker queues for it
    unmappable = [(f"plant/m{i % 3}/telemetry", b'{"other": 1}') for i in range(N)]
    good = [(f"plant/m{i % 3}/telemetry", json.dumps({"n": i}).encode()) for i in range(N)]
    await asyncio.to_thread(publish_all, broker.port, unmappable + good)
    writes = Writes(monkeypatch)
    assert await run_once(broker.port, "t-shared-acks", ack=True, expect=2 * N) == (2 * N, N)
    pubacks = writes.pubacks
    await asyncio.to_thread(publish_all, broker.port, [("plant/m0/telemetry", b'{"n": -1}')])
    # Every one of the burst was acknowledged, even those that came before the SUBACK (a
    # persistent session's queue arrives right after the CONNACK): only the new message comes.
    assert await run_once(broker.port, "t-shared-acks", ack=True) == (1, 1)
    assert 1 <= pubacks <= 40, pubacks     # a write per drain and per commit, not per message


async def test_a_queue_larger_than_receive_maximum_flows_after_a_restart(broker):
    """The queue of a persistent session is sent right after the CONNACK, Receive Maximum at a
    time: unless those are acknowledged, the broker never sends the rest."""
    await run_once(broker.port, "t-shared-rm", ack=False, receive_maximum=20)
    await asyncio.to_thread(publish_all, broker.port,
                            [(f"plant/m{i % 3}/telemetry", json.dumps({"n": i}).encode()) for i in range(200)])
    assert await run_once(broker.port, "t-shared-rm", ack=True, expect=200, receive_maximum=20) == (200, 200)
