"""Identity evidence as the reviewer relies on it, through a real Mosquitto: a device that does
not present its identity this time is unknown, not changed; a real change is recorded once."""
from __future__ import annotations

import asyncio

import paho.mqtt.publish as mqtt_publish
import pytest

from gateway.config import load_config
from gateway.runner import Gateway
from simulator.broker import MosquittoBroker
from tests.gateway.mqtt_device import write_mqtt_config
from tests.gateway.test_end_to_end import wait_for

pytestmark = pytest.mark.integration

BIRTH = "plant/m1/birth"


def write_config(tmp_path, port: int):
    return write_mqtt_config(tmp_path, port, topic="plant/m1/telemetry", signals=["power_kw"],
                             identity_topic=BIRTH, identity_wait_s=1.0)


async def retain_birth(broker: MosquittoBroker, payload: bytes) -> None:
    # An empty retained payload deletes the retained message: the device's birth is gone.
    await asyncio.to_thread(mqtt_publish.single, BIRTH, payload, qos=1, retain=True,
                            hostname=broker.host, port=broker.port)


async def reconnect(broker: MosquittoBroker, gateway: Gateway, onlines: int) -> None:
    broker.stop()
    broker.start()
    await wait_for(lambda: len(gateway.store.events(device_id="m1", kind="online")) >= onlines,
                   f"online #{onlines}")


async def test_missing_birth_is_unknown_and_a_real_change_is_recorded_once(tmp_path):
    with MosquittoBroker() as broker:
        await retain_birth(broker, b'{"serial_number": "SN-1"}')
        gateway = Gateway(load_config(write_config(tmp_path, broker.port)))
        store = gateway.store
        await gateway.start()
        try:
            await wait_for(lambda: (d := store.device("m1")) is not None and d.identity is not None
                           and d.identity.serial_number == "SN-1", "the birth's serial stored")
            await retain_birth(broker, b"")
            await reconnect(broker, gateway, 2)
            assert store.events(device_id="m1", kind="identity_changed") == []
            assert store.device("m1").identity.serial_number == "SN-1"

            await retain_birth(broker, b'{"serial_number": "SN-2"}')
            await reconnect(broker, gateway, 3)
            await wait_for(lambda: store.device("m1").identity.serial_number == "SN-2",
                           "the new serial stored")
            changes = store.events(device_id="m1", kind="identity_changed")
            assert len(changes) == 1, [c.data for c in changes]
            assert changes[0].data["old_fingerprint"] == "mqtt:SN-1"
            assert changes[0].data["new_fingerprint"] == "mqtt:SN-2"
        finally:
            await gateway.stop()


async def test_a_birth_arriving_after_the_wait_is_recorded(tmp_path):
    with MosquittoBroker() as broker:
        gateway = Gateway(load_config(write_config(tmp_path, broker.port)))
        store = gateway.store
        await gateway.start()
        try:
            await wait_for(lambda: store.device("m1").online, "m1 online without a birth")
            await asyncio.sleep(1.5)                 # past identity_wait_s: connect has answered
            assert not store.device("m1").identity.fingerprint()
            await retain_birth(broker, b'{"serial_number": "SN-LATE"}')
            await wait_for(lambda: store.device("m1").identity.serial_number == "SN-LATE",
                           "the late birth's serial stored")
            assert store.events(device_id="m1", kind="identity_changed") == []
        finally:
            await gateway.stop()
