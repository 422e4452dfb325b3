"""Security against real servers: the asyncua server with only secured endpoints and username
login, and node-opcua (a stack this project did not write) with SignAndEncrypt."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import AsyncIterator

import pytest
from cryptography import x509

from connectors.opcua.security import UntrustedServer, thumbprint
from connectors.opcua.source import OpcUaSource
from edge.errors import SourceError
from tests.connectors.devices import device
from tests.connectors.opcua_servers import NodeOpcUaServer, SecureOpcUaTestServer
from tests.connectors.servers import NS_URI, free_port
from tests.connectors.test_opcua_source import collect

PASSWORD = "s3cret-Pa55"


def secure_source(endpoint: str, pki: Path, *, policy: str = "Basic256Sha256", mode: str = "SignAndEncrypt",
                  **conn) -> OpcUaSource:
    return OpcUaSource(device("opcua", {
        "endpoint": endpoint, "publishing_interval_ms": 50, "watchdog_interval_s": 0.3, "timeout_s": 4.0,
        "security_policy": policy, "security_mode": mode, "pki_dir": str(pki),
        "application_uri": "urn:test-box:shangyun", **conn}, [
        {"name": "state", "address": f"nsu={NS_URI};s=m1.State"},
        {"name": "power_kw", "address": f"nsu={NS_URI};s=m1.PowerKw"},
    ]))


@pytest.fixture
async def secure_server(tmp_path: Path) -> AsyncIterator[SecureOpcUaTestServer]:
    server = SecureOpcUaTestServer(free_port(), tmp_path / "server", users={"operator": PASSWORD})
    await server.start()
    yield server
    await server.stop()


async def stream_once(src: OpcUaSource, write, value: float) -> None:
    await write("PowerKw", value)
    await collect(src, lambda g: any(s.signal == "power_kw" and s.value == value for s in g))


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"])
@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
async def test_secure_endpoint_with_username_streams(secure_server, tmp_path, monkeypatch, caplog,
                                                     policy, mode):
    monkeypatch.setenv("TEST_OPCUA_PASSWORD", PASSWORD)
    src = secure_source(secure_server.endpoint, tmp_path / "pki", policy=policy, mode=mode,
                        username="operator", password_env="TEST_OPCUA_PASSWORD")
    caplog.set_level(logging.DEBUG)
    try:
        identity = await src.connect()
        await stream_once(src, secure_server.write, 4.5)
    finally:
        await src.close()
    assert identity.details["security"] == f"{policy}/{mode}"
    assert identity.certificate_sha256  # the server's, seen over the secured channel
    assert secure_server.users.seen[-1] == "operator"
    assert PASSWORD not in caplog.text


async def test_client_certificate_is_made_once_with_the_configured_uri(secure_server, tmp_path):
    pki = tmp_path / "pki"
    src = secure_source(secure_server.endpoint, pki, username="operator", password=PASSWORD)
    try:
        await src.connect()
        first = (pki / "own/cert.der").read_bytes()
        await src.connect()  # reconnect: the same certificate, not a new one per connect
    finally:
        await src.close()
    assert (pki / "own/cert.der").read_bytes() == first
    cert = x509.load_der_x509_certificate(first)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:test-box:shangyun"]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and usage.data_encipherment
    assert (pki / "own/key.pem").stat().st_mode & 0o077 == 0  # the key is private


async def test_wrong_password_is_a_clear_refusal(secure_server, tmp_path):
    src = secure_source(secure_server.endpoint, tmp_path / "pki", username="operator", password="nope")
    with pytest.raises(SourceError) as err:
        await src.connect()
    await src.close()
    assert "nope" not in str(err.value)
    assert "Bad" in str(err.value)  # the server's status code, not a bare library exception


async def test_password_file(secure_server, tmp_path):
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    src = secure_source(secure_server.endpoint, tmp_path / "pki", username="operator",
                        password_file=str(tmp_path / "pw"))
    try:
        await src.connect()
    finally:
        await src.close()
    assert secure_server.users.seen[-1] == "operator"


async def test_changed_server_certificate_is_refused_after_pinning(secure_server, tmp_path):
    pki = tmp_path / "pki"
    src = secure_source(secure_server.endpoint, pki, username="operator", password=PASSWORD)
    try:
        await src.connect()  # first use: pinned
        await secure_server.stop()
        secure_server.rekey()
        await secure_server.start()
        with pytest.raises(UntrustedServer) as err:
            await src.connect()
    finally:
        await src.close()
    new = thumbprint(secure_server.cert_path.read_bytes())
    assert new in str(err.value) and "changed" in str(err.value)
    assert (pki / "rejected" / f"{new}.der").is_file()  # where the message says to copy it from


async def test_trust_list_refuses_an_unknown_server_then_accepts_it_once_trusted(secure_server, tmp_path):
    pki = tmp_path / "pki"
    src = secure_source(secure_server.endpoint, pki, username="operator", password=PASSWORD,
                        server_trust="trust_list")
    seen = thumbprint(secure_server.cert_path.read_bytes())
    try:
        with pytest.raises(UntrustedServer, match=f"{seen}.*not in the trust list"):
            await src.connect()
        (pki / "trusted").mkdir(parents=True)
        (pki / "rejected" / f"{seen}.der").rename(pki / "trusted" / "machine.der")
        await src.connect()
        await stream_once(src, secure_server.write, 2.5)
    finally:
        await src.close()


@pytest.fixture
async def node_opcua(tmp_path: Path) -> AsyncIterator[NodeOpcUaServer]:
    why = NodeOpcUaServer.available()
    # `make test-packages` installs node-opcua: missing is a broken set-up, not a skip.
    assert not why, why
    server = NodeOpcUaServer(free_port(), tmp_path / "node-pki", security=True, users={"operator": PASSWORD})
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"])
async def test_node_opcua_sign_and_encrypt_with_username(node_opcua, tmp_path, policy):
    src = secure_source(node_opcua.endpoint, tmp_path / "pki", policy=policy,
                        username="operator", password=PASSWORD)
    try:
        identity = await src.connect()
        await stream_once(src, node_opcua.write, 5.5)
    finally:
        await src.close()
    assert identity.application_uri == "urn:shangyun:test:node-opcua"
    assert identity.details["security"] == f"{policy}/SignAndEncrypt"


async def test_node_opcua_refuses_a_wrong_password_clearly(node_opcua, tmp_path):
    src = secure_source(node_opcua.endpoint, tmp_path / "pki", username="operator", password="wrong")
    with pytest.raises(SourceError, match="Bad"):
        await src.connect()
    await src.close()


@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
async def test_node_opcua_refusing_our_client_certificate_says_why_and_what_to_do(tmp_path, mode):
    """node-opcua answers an untrusted client certificate with a ServiceFault to OpenSecureChannel,
    which asyncua turns into a bare AssertionError: the message must carry the server's reason
    and how to get the certificate trusted."""
    server = NodeOpcUaServer(free_port(), tmp_path / "node-pki", security=True, users={"operator": PASSWORD})
    server.options["acceptAnyClient"] = False      # unknown client certificates are rejected
    await server.start()
    src = secure_source(server.endpoint, tmp_path / "pki", mode=mode, username="operator", password=PASSWORD)
    try:
        with pytest.raises(SourceError) as info:
            await src.connect()
    finally:
        await src.close()
        await server.stop()
    msg = str(info.value)
    assert "AssertionError" not in msg
    assert "BadSecurityChecksFailed" in msg and "refused our client certificate" in msg
    assert str(tmp_path / "pki" / "own" / "cert.der") in msg      # the file to copy
    assert "shangyun opcua cert" in msg and "trusted/certs" in msg
