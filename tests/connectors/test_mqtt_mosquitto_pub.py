"""Mosquitto's own client (mosquitto_pub, Debian's mosquitto-clients, installed by `make
test-packages`) plays the machine, over mutual TLS with its own certificate: key=value text, a
bare number and a JSON batch reach our source as typed samples at the payload's times."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
from typing import Iterator

import pytest

from connectors.mqtt.source import MqttSource
from edge.model import Quality
from tests.connectors.devices import device
from tests.connectors.mqtt_tls import TlsBroker, start_tls_broker
from tests.connectors.test_mqtt_source import take

pytestmark = pytest.mark.integration
MOSQUITTO_PUB = shutil.which("mosquitto_pub")
TOPIC = "plant/press-3/telemetry"
T = 1_700_000_000


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    b = start_tls_broker(tmp_path_factory.mktemp("mqtt-pub"))
    try:
        yield b
    finally:
        b.broker.stop()


def mosquitto_pub(tls: TlsBroker, payload: str) -> None:
    assert MOSQUITTO_PUB is not None
    subprocess.run([MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(tls.mtls_port), "-q", "1", "-V", "mqttv311",
                    "--cafile", tls.cert("ca.pem"), "--cert", tls.cert("client.pem"),
                    "--key", tls.cert("client.key"), "-i", "press-3", "-t", TOPIC, "-m", payload],
                   check=True, capture_output=True, timeout=20)


@pytest.mark.skipif(MOSQUITTO_PUB is None, reason="mosquitto_pub not installed (make test-packages)")
async def test_mosquitto_pub_over_mutual_tls_in_three_payload_forms(tls: TlsBroker) -> None:
    src = MqttSource(device("mqtt", {
        "host": "127.0.0.1", "port": tls.mtls_port, "topic": TOPIC, "identity_wait_s": 0, "timeout_s": 3.0,
        "ca_file": tls.cert("ca.pem"), "cert_file": tls.cert("client.pem"), "key_file": tls.cert("client.key")},
        [{"name": "power_kw", "address": "power"}, {"name": "count_total", "address": "n"},
         {"name": "state", "address": "state"}, {"name": "temp", "address": "value"}]))
    try:
        await src.connect()
        await asyncio.to_thread(mosquitto_pub, tls, f"ts={T};power=4.25;n=17;state=running")
        await asyncio.to_thread(mosquitto_pub, tls, "21.5")
        await asyncio.to_thread(mosquitto_pub, tls, f'[{{"ts": {T + 1}, "n": 18}}, {{"ts": {T + 2}, "n": 19}}]')
        got = await take(src, 6)
    finally:
        await src.close()
    by = [(s.signal, s.value) for s in got]
    assert by[:3] == [("power_kw", 4.25), ("count_total", 17), ("state", "running")]
    assert by[3] == ("temp", 21.5)
    assert by[4:] == [("count_total", 18), ("count_total", 19)]
    assert [s.ts_ns for s in got if s.signal == "count_total"] == [T * 10**9, (T + 1) * 10**9, (T + 2) * 10**9]
    assert all(s.quality is Quality.GOOD for s in got)
