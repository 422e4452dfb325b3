"""The upstream MQTT sink over TLS: a Mosquitto with a TLS listener (certificates made here with
openssl), verified against the configured CA; an unknown CA is refused, never silently accepted."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from edge.errors import RetryableSinkError
from edge.model import Quality, Sample
from edge.sinks import Batch, make_sink
from simulator.ports import free_port

from .check import until
from .servers import ConfiguredMosquitto
from .test_mqtt_sink import Consumer

pytestmark = pytest.mark.integration


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(d: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-subj", "/CN=shangyun test CA", "-days", "2", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.cnf", cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out",
             "other-ca.pem", "-subj", "/CN=someone else", "-days", "2", cwd=d)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    _certificates(tmp_path)
    tls_port, plain_port = free_port(), free_port()
    conf = (f"listener {tls_port} 127.0.0.1\nallow_anonymous true\n"
            f"cafile {tmp_path / 'ca.pem'}\ncertfile {tmp_path / 'server.pem'}\n"
            f"keyfile {tmp_path / 'server.key'}\n"
            f"listener {plain_port} 127.0.0.1\nallow_anonymous true\n")
    with ConfiguredMosquitto(conf, [plain_port, tls_port], tmp_path):
        yield tls_port, plain_port, tmp_path


async def test_mqtts_with_the_configured_ca_delivers(tls_broker) -> None:
    tls_port, plain_port, certs = tls_broker
    consumer = Consumer(plain_port)
    sink = make_sink({"type": "mqtt", "broker": f"mqtts://127.0.0.1:{tls_port}", "site": "s",
                      "ca_file": str(certs / "ca.pem")})
    try:
        await until(lambda: sink.connected, 15, "the TLS connection")
        await sink.send(Batch([Sample("m00", "power_kw", 1_000_000, 2.5, Quality.GOOD)]))
        await until(lambda: len(consumer.docs) == 1, 10, "the message at the consumer")
        assert consumer.docs[0]["samples"][0]["value"] == 2.5
    finally:
        await sink.close()
        consumer.close()


async def test_mqtts_refuses_a_broker_signed_by_another_ca(tls_broker) -> None:
    tls_port, _, certs = tls_broker
    sink = make_sink({"type": "mqtt", "broker": f"mqtts://127.0.0.1:{tls_port}", "site": "s",
                      "ca_file": str(certs / "other-ca.pem")})
    try:
        await until(lambda: "connect failed" in sink.last_error, 15, "the handshake to fail")
        assert not sink.connected
        with pytest.raises(RetryableSinkError, match="not connected"):
            await sink.send(Batch([Sample("m00", "power_kw", 1, 2.5, Quality.GOOD)]))
    finally:
        await sink.close()
