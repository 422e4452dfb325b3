"""BufferedClient's telemetry reader (connectors/mqtt/client.py) against paho's own packet reader:
the same byte stream from a real socket, cut anywhere, gives the same messages in the same order
and the same result codes, whatever mix of packets it holds."""
from __future__ import annotations

import asyncio
import json
import socket
import struct

import paho.mqtt.client as mqtt
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.mqtt.client import BufferedClient
from connectors.mqtt.source import MqttSource
from tests.connectors.mqtt_rig import TOPIC, rig_device

V5, V311 = mqtt.MQTTv5, mqtt.MQTTv311


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes, payload: bytes, qos: int, mid: int, props: bytes | None, v5: bool) -> bytes:
    body = struct.pack(">H", len(topic)) + topic + (struct.pack(">H", mid) if qos else b"")
    if v5:
        body += remaining_length(len(props or b"")) + (props or b"")
    body += payload
    return bytes([0x30 | (qos << 1)]) + remaining_length(len(body)) + body


# Valid MQTT 5 PUBLISH properties: message expiry interval, content type, a user property.
properties = st.sampled_from([None, b"\x02\x00\x00\x00\x3c", b"\x03\x00\x04json",
                              b"\x26\x00\x01k\x00\x01v"])
topics = st.one_of(st.text(min_size=1, max_size=40).map(lambda t: t.encode()),
                   st.sampled_from([b"f/L1/m001/telemetry", b"\xff\xfe/bad-utf8", b"a" * 300]))
payloads = st.one_of(st.binary(max_size=300), st.sampled_from([b"", b"x" * 70_000]))


@st.composite
def packets(draw, v5: bool) -> bytes:
    kind = draw(st.sampled_from(["publish"] * 6 + ["pingresp", "puback"]))
    if kind == "pingresp":
        return b"\xd0\x00"
    if kind == "puback":    # for a message we never sent: paho logs and ignores it
        return b"\x40\x02\x12\x34"
    return publish(draw(topics), draw(payloads), draw(st.sampled_from([0, 1, 1, 2])),
                   draw(st.integers(1, 65535)), draw(properties) if v5 else None, v5)


@st.composite
def streams(draw) -> tuple[bool, bytes, list[int]]:
    v5 = draw(st.booleans())
    data = b"".join(draw(st.lists(packets(v5), min_size=1, max_size=30)))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=6))))
    return v5, data, cuts


def read(stream: bytes, cuts: list[int], protocol: int, fast: bool) -> tuple[list[tuple], list[int]]:
    """Feed `stream` to a client over a socketpair in pieces ending at `cuts`; what it delivered
    (topic bytes, payload, qos, mid) in order, and the result code of each loop_read."""
    got: list[tuple] = []
    codes: list[int] = []
    ours, theirs = socket.socketpair()
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol, manual_ack=True)
    client.on_message = lambda c, u, m: got.append((m._topic, bytes(m.payload), m.qos, m.mid))
    if fast:
        client.on_telemetry = lambda msgs: got.extend((t.encode(), p, q, m) for t, p, q, m in msgs)
    ours.setblocking(False)
    theirs.setblocking(False)
    client._sock = ours     # as if connected: the reader is what is compared
    try:
        start = 0
        for end in [*cuts, len(stream)]:
            piece, start = stream[start:end], max(start, end)
            while True:     # until sent and drained (paho: MQTT_ERR_SUCCESS on EAGAIN)
                if piece:
                    try:
                        piece = piece[theirs.send(piece):]
                    except BlockingIOError:
                        pass    # the socket buffer is full: read first
                try:
                    waiting = len(ours.recv(1, socket.MSG_PEEK)) > 0
                except BlockingIOError:
                    waiting = False
                if not piece and not waiting and client._roff >= len(client._rbuf):
                    break
                rc = client.loop_read()
                codes.append(int(rc))
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    return got, codes
    finally:
        client._sock = None
        ours.close()
        theirs.close()
    return got, codes


@settings(max_examples=300, deadline=None)
@given(case=streams())
def test_the_fast_reader_delivers_what_paho_delivers(case):
    v5, data, cuts = case
    protocol = V5 if v5 else V311
    fast_got, fast_codes = read(data, cuts, protocol, fast=True)
    paho_got, paho_codes = read(data, cuts, protocol, fast=False)
    assert fast_got == paho_got
    assert (fast_codes[-1:] or [0]) == (paho_codes[-1:] or [0])


def test_a_buffer_of_telemetry_is_handed_over_in_one_call():
    """Fifty PUBLISHes read from the socket at once reach `on_telemetry` together, not one by one."""
    data = b"".join(publish(b"f/m%02d/t" % i, b'{"n":%d}' % i, 1, i + 1, None, True) for i in range(50))
    calls: list[int] = []
    ours, theirs = socket.socketpair()
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=V5, manual_ack=True)
    client.on_telemetry = lambda msgs: calls.append(len(msgs))
    ours.setblocking(False)
    client._sock = ours
    try:
        theirs.sendall(data)
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    finally:
        client._sock = None
        ours.close()
        theirs.close()
    assert sum(calls) == 50 and len(calls) <= 2, calls     # the first may come through paho's reader


async def test_messages_read_together_keep_distinct_arrival_times(broker):
    """Messages without a timestamp of their own are stamped with their arrival: those read from
    the socket in one go must still get one instant each, or the store (one row per device,
    signal and time) would keep one of them."""
    n = 300
    src = MqttSource(rig_device(broker.port, client_id="t-burst", receive_maximum=n))
    await src.connect()     # creates the session: the broker queues what comes while we are away
    await src.close()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-burst-pub")
    pub.max_inflight_messages_set(n)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        infos = [pub.publish(TOPIC, json.dumps({"n": i}), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        pub.disconnect()
        pub.loop_stop()
    await src.connect()     # the broker sends all of them at once
    stamps: dict[int, int] = {}
    try:
        async def collect() -> None:
            async for batch in src.samples():
                stamps.update((int(s.value), s.ts_ns) for s in batch if s.signal == "count_total")
                if batch.ack is not None:
                    batch.ack()
                if len(stamps) >= n:
                    return

        await asyncio.wait_for(collect(), 30)
    finally:
        await src.close()
    assert sorted(stamps) == list(range(n))
    times = [stamps[i] for i in range(n)]
    assert len(set(times)) == n and times == sorted(times)
