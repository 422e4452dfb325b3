"""The southbound MQTT client over TLS against a real Mosquitto (certificates made by the test):
mutual TLS accepted with the client certificate as identity evidence, a broker signed by another
CA refused, a client certificate the broker does not trust refused, and username/password taken
from the environment or a file (a wrong one refused)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from connectors.mqtt.config import MqttConnection
from connectors.mqtt.source import MqttSource
from edge.errors import SourceError
from tests.connectors.devices import device
from tests.connectors.mqtt_tls import PASSWORD, USER, TlsBroker, sha256_of, start_tls_broker
from tests.connectors.test_mqtt_source import Publisher, take

pytestmark = pytest.mark.integration
SIGNALS = [{"name": "count_total", "address": "n"}]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    b = start_tls_broker(tmp_path_factory.mktemp("mqtt-tls"))
    try:
        yield b
    finally:
        b.broker.stop()


def source(port: int, **conn: object) -> MqttSource:
    return MqttSource(device("mqtt", {"host": "127.0.0.1", "port": port, "topic": "tls/m1/telemetry",
                                      "identity_wait_s": 0, "timeout_s": 3.0, **conn}, SIGNALS))


async def test_mutual_tls_delivers_and_the_client_certificate_is_identity_evidence(tls: TlsBroker) -> None:
    src = source(tls.mtls_port, ca_file=tls.cert("ca.pem"), cert_file=tls.cert("client.pem"),
                 key_file=tls.cert("client.key"))
    pub = Publisher(tls.plain_port)
    try:
        identity = await src.connect()
        pub.publish("tls/m1/telemetry", {"n": 7})
        got = await take(src, 1)
    finally:
        await src.close()
        pub.close()
    assert [s.value for s in got] == [7]
    assert src.endpoint.startswith(f"mqtts://127.0.0.1:{tls.mtls_port}/")
    assert identity.details["client_certificate_subject"] == "CN=gateway-7,O=Plant 7"
    assert identity.details["client_certificate_sha256"] == sha256_of(tls.dir / "client.pem")
    assert identity.details["broker_certificate_sha256"] == sha256_of(tls.dir / "server.pem")
    # One gateway certificate serves many devices: it must not make them one machine.
    assert identity.fingerprint() == ""


async def test_a_broker_signed_by_another_ca_is_refused(tls: TlsBroker) -> None:
    src = source(tls.mtls_port, ca_file=tls.cert("other-ca.pem"), cert_file=tls.cert("client.pem"),
                 key_file=tls.cert("client.key"))
    with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
        await src.connect()
    await src.close()


async def test_a_broker_certificate_for_another_name_is_refused(tls: TlsBroker) -> None:
    # The broker's certificate is for IP 127.0.0.1 only: reached as "localhost" it does not match.
    src = MqttSource(device("mqtt", {"host": "localhost", "port": tls.mtls_port, "topic": "tls/m1/telemetry",
                                     "identity_wait_s": 0, "timeout_s": 3.0, "ca_file": tls.cert("ca.pem"),
                                     "cert_file": tls.cert("client.pem"), "key_file": tls.cert("client.key")},
                            SIGNALS))
    with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED.*[Hh]ostname mismatch"):
        await src.connect()
    await src.close()


async def test_a_ca_file_that_is_not_a_certificate_is_a_clear_error(tls: TlsBroker, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\n\x00\xffnot base64\n-----END CERTIFICATE-----\n")
    src = source(tls.mtls_port, ca_file=str(junk))
    with pytest.raises(SourceError, match="ca_file .*junk.pem: cannot load"):
        await src.connect()
    await src.close()


async def test_a_client_certificate_from_another_ca_is_refused_by_the_broker(tls: TlsBroker) -> None:
    src = source(tls.mtls_port, ca_file=tls.cert("ca.pem"), cert_file=tls.cert("stranger.pem"),
                 key_file=tls.cert("stranger.key"))
    # TLS 1.3 finishes the client's side of the handshake before the broker checks our
    # certificate, so the refusal may arrive as an alert on connect or as the link dropping.
    with pytest.raises(SourceError, match="cannot connect|before CONNACK: over TLS"):
        await src.connect()
    await src.close()


async def test_no_client_certificate_where_one_is_required_is_refused(tls: TlsBroker) -> None:
    src = source(tls.mtls_port, ca_file=tls.cert("ca.pem"))
    with pytest.raises(SourceError, match="cannot connect|before CONNACK: over TLS"):
        await src.connect()
    await src.close()


async def test_plain_mqtt_to_a_tls_listener_fails_cleanly(tls: TlsBroker) -> None:
    src = source(tls.mtls_port)
    with pytest.raises(SourceError):
        await src.connect()
    await src.close()


async def test_password_from_the_environment(tls: TlsBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANT_MQTT_USER", USER)
    monkeypatch.setenv("PLANT_MQTT_PASSWORD", PASSWORD)
    src = source(tls.password_port, ca_file=tls.cert("ca.pem"), username_env="PLANT_MQTT_USER",
                 password_env="PLANT_MQTT_PASSWORD")
    try:
        identity = await src.connect()
    finally:
        await src.close()
    assert "client_certificate_sha256" not in identity.details
    assert identity.details["broker_certificate_sha256"] == sha256_of(tls.dir / "server.pem")


async def test_password_from_a_file_and_a_wrong_one_refused(tls: TlsBroker, tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.pw"
    secret.write_text(PASSWORD + "\n")     # as `echo ... > file` leaves it
    src = source(tls.password_port, ca_file=tls.cert("ca.pem"), username=USER, password_file=str(secret))
    try:
        await src.connect()
    finally:
        await src.close()
    secret.write_text("wrong\n")           # read again at each connect: a rotated password counts
    with pytest.raises(SourceError, match="refused"):
        await src.connect()
    await src.close()


async def test_missing_secrets_are_clear_errors(tls: TlsBroker, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_MQTT_PW", raising=False)
    src = source(tls.password_port, ca_file=tls.cert("ca.pem"), username=USER, password_env="NO_SUCH_MQTT_PW")
    with pytest.raises(SourceError, match="password_env: environment variable NO_SUCH_MQTT_PW is not set"):
        await src.connect()
    src = source(tls.password_port, ca_file=tls.cert("ca.pem"), username=USER,
                 password_file=str(tmp_path / "absent"))
    with pytest.raises(SourceError, match="password_file .*absent: No such file"):
        await src.connect()
    src = source(tls.mtls_port, ca_file=str(tmp_path / "absent-ca.pem"))
    with pytest.raises(SourceError, match="ca_file .*absent-ca.pem: cannot load"):
        await src.connect()
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key")
    src = source(tls.mtls_port, ca_file=tls.cert("ca.pem"), cert_file=tls.cert("client.pem"),
                 key_file=str(bad_key))
    with pytest.raises(SourceError, match="cert_file .* cannot load"):
        await src.connect()


def test_tls_config_rules() -> None:
    def conn(**kw: object) -> dict[str, object]:
        return {"host": "h", "topic": "t", **kw}

    cfg = source(1883, ca_file="/x/ca.pem").config
    assert cfg.tls and cfg.port == 1883                 # an explicit port is kept
    assert MqttConnection.model_validate(conn(ca_file="/x")).port == 8883
    assert MqttConnection.model_validate(conn(tls=True)).port == 8883
    assert MqttConnection.model_validate(conn()).port == 1883
    with pytest.raises(ValueError, match="key_file needs cert_file"):
        MqttConnection.model_validate(conn(key_file="/k"))
    with pytest.raises(ValueError, match="password / password_file"):
        MqttConnection.model_validate(conn(username="u", password="p", password_file="/f"))
    with pytest.raises(ValueError, match="username or username_env"):
        MqttConnection.model_validate(conn(username="u", username_env="U"))
