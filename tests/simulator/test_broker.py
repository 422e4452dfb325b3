"""The private Mosquitto: starts on a free port, carries messages, restarts on the same port."""
from __future__ import annotations

import queue

import paho.mqtt.client as mqtt
import pytest

from simulator.broker import BrokerError, MosquittoBroker

def roundtrip(host: str, port: int, payload: bytes) -> bytes:
    got: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-roundtrip")
    client.on_message = lambda c, u, msg: got.put(msg.payload)
    client.connect(host, port)
    client.loop_start()
    try:
        client.subscribe("t/x", qos=1)
        client.publish("t/x", payload, qos=1, retain=True)
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
        assert roundtrip(host, port, b"two") == b"two"
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
