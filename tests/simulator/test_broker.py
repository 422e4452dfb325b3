"""The private Mosquitto: starts on a free port, carries messages, restarts on the same port."""
from __future__ import annotations

import queue

import paho.mqtt.client as mqtt
import pytest

from simulator.broker import BrokerError, MosquittoBroker

def roundtrip(host: str, port: int, payload: bytes, topic: str = "t/x") -> bytes:
    got: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-roundtrip")
    client.on_message = lambda c, u, msg: got.put(msg.payload)
    client.connect(host, port)
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        client.publish(topic, payload, qos=1, retain=True)
        return got.get(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()

def test_start_roundtrip_stop_restart_same_port() -> None:
    b = MosquittoBroker()
    host, port = b.start()
    try:
        assert (host, port) == (b.host, b.port) and port > 0
        assert roundtrip(host, port, b"one") == b"one"
        b.stop()
        assert not b.running
        assert b.start() == (host, port)
        # A fresh topic: t/x still holds the retained b"one" (persistence keeps it).
        assert roundtrip(host, port, b"two", topic="t/y") == b"two"
    finally:
        b.close()
    assert not b.running

def test_context_manager_gives_distinct_ports(broker: MosquittoBroker) -> None:
    with MosquittoBroker() as other:
        assert other.port != broker.port
        assert roundtrip(other.host, other.port, b"x") == b"x"

def test_missing_executable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("os.access", lambda *a: False)
    with pytest.raises(BrokerError, match="apt-get install mosquitto"):
        MosquittoBroker().start()

def test_port_before_start_is_an_error() -> None:
    with pytest.raises(BrokerError, match="start"):
        MosquittoBroker().port


def test_queued_messages_for_an_offline_session_survive_a_broker_restart() -> None:
    """QoS 1 messages the broker acknowledged to the publisher, queued for a persistent session
    that is offline, are still delivered after the broker restarts (persistence on)."""
    n = 200
    got: queue.Queue[bytes] = queue.Queue()

    def subscriber() -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-durable", clean_session=False)
        c.on_message = lambda cl, u, msg: got.put(msg.payload)
        return c

    with MosquittoBroker() as b:
        sub = subscriber()
        sub.connect(b.host, b.port)
        sub.loop_start()
        sub.subscribe("t/durable", qos=1)
        probe = sub.publish("t/durable", b"probe", qos=1)
        probe.wait_for_publish(10)
        assert got.get(timeout=10) == b"probe"  # the subscription is in place
        sub.disconnect()
        sub.loop_stop()

        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-durable-pub")
        pub.connect(b.host, b.port)
        pub.loop_start()
        infos = [pub.publish("t/durable", str(i).encode(), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()  # PUBACKed by the broker: it promised to keep it
        pub.disconnect()
        pub.loop_stop()

        b.stop()
        b.start()

        sub = subscriber()
        sub.connect(b.host, b.port)
        sub.loop_start()
        try:
            received = [got.get(timeout=10) for _ in range(n)]
        except queue.Empty:
            received = []
        finally:
            sub.disconnect()
            sub.loop_stop()
    assert received == [str(i).encode() for i in range(n)]
