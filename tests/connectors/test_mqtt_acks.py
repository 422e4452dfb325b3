"""MQTT messages are acknowledged only once stored: what was not stored comes again (real Mosquitto)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from connectors.mqtt.source import MqttSource
from edge.errors import StoreError
from edge.model import Quality
from edge.store import Store
from tests.connectors.mqtt_rig import DEVICE_ID, TOPIC, rig_device, running, spawn
from tests.connectors.servers import eventually

MARKER = 10**6     # a count no message reaches (a negative one would now be refused as a count)
# An hour back: recent enough for the plausible-timestamp window, clear of the live minute.
T0_MS = (time.time_ns() // 1_000_000 // 1000 - 3600) * 1000


class Publisher:
    def __init__(self, port: int, client_id: str = "t-pub"):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, values: range | list[int], *, qos: int = 1, raw: bytes | None = None) -> None:
        infos = [self.client.publish(TOPIC, raw if raw is not None else json.dumps({"ts": T0_MS + i, "n": i}),
                                     qos=qos) for i in values]
        for info in infos:
            info.wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker):
    p = Publisher(broker.port)
    yield p
    p.close()


async def take(src: MqttSource, n: int, *, ack: bool, keep: list | None = None) -> list[int]:
    """Values of the next `n` messages; acknowledges them (as a stored batch would) if `ack`,
    else appends the batches to `keep` (when given) for a later ack."""
    got: list[int] = []

    async def run() -> None:
        async for batch in src.samples():
            got.extend(int(s.value) for s in batch)
            if ack and batch.ack is not None:
                batch.ack()
            elif keep is not None:
                keep.append(batch)
            if len(got) >= n:
                return

    await asyncio.wait_for(run(), 10)
    return got


def read_store(db: Path) -> tuple[list[tuple[int, int]], list[dict], int]:
    """(ts, value) of every stored count_total reading (not the BAD marks of a lost link), the
    rig's offline events, and how many times it came online."""
    if not db.exists():
        return [], [], 0
    try:
        store = Store.open(db, readonly=True)
    except StoreError:
        return [], [], 0  # the rig is creating it
    try:
        rows = [(s.ts_ns, int(s.value)) for s in store.samples(DEVICE_ID, "count_total")
                if s.quality is not Quality.BAD]
        return rows, [e.data for e in store.events(kind="rig_offline")], len(store.events(kind="rig_online"))
    finally:
        store.close()


def kill(proc) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


async def test_killed_while_the_store_is_slow_nothing_is_lost_and_the_link_holds(tmp_path, broker, publisher):
    """A consumer whose store stalls for longer than 1.5 x keep-alive, then stores slowly, is
    killed with SIGKILL and started again: every message is in the store exactly once, and the
    broker never dropped its link while the store was slow."""
    n, db = 1000, tmp_path / "rig.db"
    conn = {"client_id": "rig-kill", "keepalive_s": 5, "receive_maximum": 50}
    # A 12 s stall, then 20 samples per 0.1 s: all would take 17 s; killed after ~13 s.
    first = spawn(broker.port, db, conn, sink_stall_s=12, sink_delay_s=0.1, batch_size=20, queue_size=40)
    second = None
    try:
        await eventually(lambda: read_store(db)[2] == 1, timeout_s=20, what="the rig online")
        await asyncio.to_thread(publisher.send, range(n))
        await eventually(lambda: len(read_store(db)[0]) >= 200 or read_store(db)[1], timeout_s=60,
                         what="the stall and some stored")
        rows, offline, _ = read_store(db)
        kill(first)
        assert offline == [], f"the link was dropped while the store was slow: {offline}"
        assert len(rows) < n  # killed with messages still unstored

        second = spawn(broker.port, db, conn)
        await eventually(lambda: len(read_store(db)[0]) >= n, timeout_s=30, what="every message stored")
        rows, _, _ = read_store(db)
    finally:
        kill(first)
        if second is not None:
            kill(second)
    expected_ts = [(T0_MS + i) * 1_000_000 for i in range(n)]
    assert [ts for ts, _ in rows] == expected_ts  # one row per (device, signal, ts), none missing
    assert [v for _, v in rows] == list(range(n))


async def test_unacknowledged_messages_come_again_acknowledged_ones_do_not(broker, publisher):
    spec = rig_device(broker.port, client_id="t-redeliver")
    src = MqttSource(spec)
    await src.connect()
    try:
        publisher.send(range(10))
        assert await take(src, 10, ack=False) == list(range(10))
    finally:
        await src.close()
    await src.connect()  # the same session: the broker sends them again
    try:
        assert await take(src, 10, ack=True) == list(range(10))
        await eventually(lambda: src.in_flight == 0, what="acks sent")
    finally:
        await src.close()
    await src.connect()
    try:
        publisher.send([99])
        assert await take(src, 1, ack=True) == [99]  # the acknowledged ten are gone
    finally:
        await src.close()


async def test_an_ack_from_an_earlier_connection_is_not_sent_on_the_next(broker, publisher):
    src = MqttSource(rig_device(broker.port, client_id="t-generation"))
    await src.connect()
    stale = []
    try:
        publisher.send([1])
        async for batch in src.samples():
            stale.append(batch)
            break
    finally:
        await src.close()
    await src.connect()
    try:
        assert await take(src, 1, ack=False) == [1]  # redelivered on the new connection
        assert src.in_flight == 1
        stale[0].ack()  # settles a message of the old connection: nothing goes out on this one
        assert src.in_flight == 1
    finally:
        await src.close()
    await src.connect()
    try:
        assert await take(src, 1, ack=True) == [1]  # still unacknowledged, so here again
    finally:
        await src.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_the_broker_holds_back_what_exceeds_the_in_flight_limit(broker, publisher, protocol):
    """Backpressure is held at the broker: it sends no more unacknowledged messages than Receive
    Maximum (MQTT 5) or, for 3.1.1, its own max_inflight_messages (1000 in the private broker).
    A QoS 0 marker published after them is not subject to the limit, so once it arrives
    everything the broker was willing to send has arrived."""
    limit = 5 if protocol == "5" else 1000
    n = limit + 30
    src = MqttSource(rig_device(broker.port, protocol=protocol, receive_maximum=5, client_id=f"t-rm-{protocol}"))
    await src.connect()
    try:
        await asyncio.to_thread(publisher.send, range(n))
        publisher.send([MARKER], qos=0)
        held: list = []
        assert await take(src, limit + 1, ack=False, keep=held) == [*range(limit), MARKER]
        assert src.in_flight == limit
        for batch in held:
            if batch.ack is not None:  # the QoS 0 marker's batch has nothing to acknowledge
                batch.ack()
        rest = await take(src, n - limit, ack=True)  # each ack lets the broker send more
    finally:
        await src.close()
    assert rest == list(range(limit, n))


async def test_qos2_is_taken_as_qos1_and_acknowledged_after_storing(broker, publisher):
    src = MqttSource(rig_device(broker.port, qos=2, client_id="t-qos2"))
    await src.connect()
    try:
        publisher.send(range(5), qos=2)
        assert await take(src, 5, ack=False) == list(range(5))
        assert src.in_flight == 5  # QoS 1 flow: each waits for its PUBACK
    finally:
        await src.close()
    await src.connect()
    try:
        assert await take(src, 5, ack=True) == list(range(5))  # not stored, so sent again
        await eventually(lambda: src.in_flight == 0, what="acks sent")
    finally:
        await src.close()


async def test_qos0_is_not_tracked_for_acks(broker, publisher):
    src = MqttSource(rig_device(broker.port, qos=0, client_id="t-qos0"))
    await src.connect()
    try:
        publisher.send(range(3), qos=0)
        assert await take(src, 3, ack=True) == [0, 1, 2]
        assert src.in_flight == 0
    finally:
        await src.close()


async def test_through_the_supervisor_and_pipeline_everything_is_stored_and_acknowledged(
        tmp_path, broker, publisher):
    store = Store.open(tmp_path / "s.db")
    spec = rig_device(broker.port, client_id="t-rig", receive_maximum=20)
    async with running(spec, store, batch_size=50) as (sup, rec):
        await eventually(lambda: rec.online, what="online")
        await asyncio.to_thread(publisher.send, range(300))
        await eventually(lambda: len(store.samples(DEVICE_ID, "count_total")) == 300, what="300 stored")
        await eventually(lambda: sup.source.in_flight == 0, what="all acknowledged")
        assert rec.offline == []
    store.close()


async def test_acknowledgements_settled_together_leave_in_one_socket_write(broker, publisher):
    """A commit settles many messages at once: their PUBACKs go out as one write (paho alone
    makes a send() per PUBACK), and the broker takes every one of them (nothing comes again)."""
    n = 200
    src = MqttSource(rig_device(broker.port, client_id="t-one-write", receive_maximum=n))
    await src.connect()
    try:
        await asyncio.to_thread(publisher.send, range(n))
        held: list = []
        assert await take(src, n, ack=False, keep=held) == list(range(n))
        client = src._client
        writes: list[bytes] = []
        send = client._sock_send

        def counting_send(buf):
            writes.append(bytes(buf[:1]))   # the real socket still sends it; only counted here
            return send(buf)

        client._sock_send = counting_send
        for batch in held[1:]:      # the oldest still holds every later one back...
            batch.ack()
        assert src.in_flight == n and writes == []
        held[0].ack()               # ...until it is settled: all of them at once
        await eventually(lambda: src.in_flight == 0 and not client.want_write(), what="acks written")
        assert 1 <= len([w for w in writes if w == b"\x40"]) <= 2, writes[:10]
        # The broker takes a connection's packets in order, so its PUBACK for a PUBLISH sent
        # after ours says it has read them all. Closing at once may reset the connection before
        # it has (seen under load): that is a redelivery after a restart, which this test is not
        # about; a PUBACK lost or malformed in the batch still shows below.
        sync = client.publish("rig/sync", b"", qos=1)
        await asyncio.to_thread(sync.wait_for_publish, 10)
        assert sync.is_published()
    finally:
        await src.close()
    await src.connect()
    try:
        publisher.send([MARKER])
        assert await take(src, 1, ack=True) == [MARKER]   # the 200 acknowledged ones are gone
    finally:
        await src.close()


async def test_a_clean_close_right_after_acknowledging_lets_the_broker_read_the_acks(broker, publisher):
    """Closing the connection right after queueing PUBACKs could reset it before Mosquitto had
    read them, and the broker then sent those messages again on the next connect with the same
    session (3 of 8 runs of the test above, under load). A clean close now waits for an
    UNSUBSCRIBE round trip first (connectors/mqtt/client.broker_has_read_all): twenty rounds
    of acknowledge-and-close at once, and nothing acknowledged ever comes again."""
    spec = rig_device(broker.port, client_id="t-close-barrier")
    src = MqttSource(spec)
    for round_ in range(20):
        await src.connect()
        try:
            values = range(round_ * 100, round_ * 100 + 50)
            publisher.send(values)
            got = await take(src, 50, ack=True)
            # every message once: none of an earlier round came again
            assert got == list(values), f"round {round_}: {got[:5]}..."
        finally:
            await src.close()   # at once: no wait for the acks to leave


async def test_the_close_barrier_is_a_round_trip_on_a_live_link_and_nothing_on_a_dead_one(broker):
    from connectors.mqtt.client import broker_has_read_all

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-barrier",
                         protocol=mqtt.MQTTv5)
    assert await broker_has_read_all(client, 1.0) is False   # never connected: nothing to wait for
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        await eventually(client.is_connected, what="connected")
        assert await broker_has_read_all(client, 5.0) is True
        assert client.on_unsubscribe is None                  # its callback is not left behind
    finally:
        client.disconnect()
        client.loop_stop()
