"""X.509 user identity (a user certificate and its key instead of a username) against the
asyncua server, which accepts only certificate users on a SignAndEncrypt endpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from asyncua import Server, ua
from cryptography.hazmat.primitives.serialization import Encoding

from edge.errors import ConfigError, SourceError
from tests.connectors.opcua_servers import NodeOpcUaServer, SecureOpcUaTestServer, make_server_certificate
from tests.connectors.servers import free_port
from tests.connectors.test_opcua_security import secure_source, stream_once


class CertificateUsers:
    """Accepts exactly the certificates it was given (by DER), and records what it saw."""

    def __init__(self) -> None:
        self.trusted: set[bytes] = set()
        self.seen: list[str] = []

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole
        if certificate is None:
            self.seen.append(f"user:{username}")
            return None
        der = certificate if isinstance(certificate, bytes) else certificate.public_bytes(Encoding.DER)
        self.seen.append("certificate")
        return User(role=UserRole.User) if der in self.trusted else None


class CertificateUserServer(SecureOpcUaTestServer):
    def __init__(self, port: int, cert_dir: Path):
        super().__init__(port, cert_dir, users={})
        self.cert_users = CertificateUsers()

    def _make_server(self) -> Server:
        return Server(user_manager=self.cert_users)

    async def _configure(self, server: Server) -> None:
        await super()._configure(server)
        server.set_identity_tokens([ua.X509IdentityToken])


def user_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = make_server_certificate(directory / name, f"urn:user:{name}")
    return cert, key


@pytest.fixture
async def cert_server(tmp_path: Path) -> AsyncIterator[CertificateUserServer]:
    server = CertificateUserServer(free_port(), tmp_path / "server")
    await server.start()
    yield server
    await server.stop()


async def test_x509_user_identity_is_accepted(cert_server, tmp_path):
    cert, key = user_certificate(tmp_path / "users", "alice")
    cert_server.cert_users.trusted.add(cert.read_bytes())
    src = secure_source(cert_server.endpoint, tmp_path / "pki",
                        user_certificate_path=str(cert), user_private_key_path=str(key))
    try:
        await src.connect()
        await stream_once(src, cert_server.write, 6.5)
    finally:
        await src.close()
    assert cert_server.cert_users.seen[-1] == "certificate"


async def test_an_unknown_user_certificate_is_refused_clearly(cert_server, tmp_path):
    cert, key = user_certificate(tmp_path / "users", "mallory")   # not trusted by the server
    src = secure_source(cert_server.endpoint, tmp_path / "pki",
                        user_certificate_path=str(cert), user_private_key_path=str(key))
    with pytest.raises(SourceError, match="server refused: Bad"):
        await src.connect()
    await src.close()
    assert cert_server.cert_users.seen == ["certificate"]


async def test_a_missing_user_key_file_is_a_config_error(tmp_path):
    cert, _ = user_certificate(tmp_path / "users", "bob")
    src = secure_source("opc.tcp://127.0.0.1:1", tmp_path / "pki",
                        user_certificate_path=str(cert), user_private_key_path=str(tmp_path / "nope.pem"))
    with pytest.raises((ConfigError, SourceError), match="user certificate .*nope.pem: No such file"):
        await src.connect()


def test_one_user_identity_at_a_time(tmp_path):
    with pytest.raises((ConfigError, ValueError), match="one user identity"):
        secure_source("opc.tcp://127.0.0.1:1", tmp_path, username="u", password="p",
                      user_certificate_path="c.der", user_private_key_path="k.pem")
    with pytest.raises((ConfigError, ValueError), match="go together"):
        secure_source("opc.tcp://127.0.0.1:1", tmp_path, user_certificate_path="c.der")


async def test_node_opcua_accepts_an_x509_user(tmp_path):
    """node-opcua checks a user certificate against its user PKI (here: accepting unknown ones,
    as an operator who has trusted it would) and verifies the token's signature."""
    why = NodeOpcUaServer.available()
    assert not why, why   # `make test-packages` installs node-opcua: missing is a broken set-up
    server = NodeOpcUaServer(free_port(), tmp_path / "node-pki", security=True, users={"operator": "x"})
    await server.start()
    cert, key = user_certificate(tmp_path / "users", "carol")
    src = secure_source(server.endpoint, tmp_path / "pki",
                        user_certificate_path=str(cert), user_private_key_path=str(key))
    try:
        await src.connect()
        await stream_once(src, server.write, 7.5)
    finally:
        await src.close()
        await server.stop()
