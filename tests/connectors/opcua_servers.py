"""OPC UA servers for the security and peer tests: a secured asyncua server, and node-opcua
(an OPC UA stack this project did not write) run from tests/peers/node-opcua."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto import cert_gen
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.connectors.servers import OpcUaTestServer

PEER_DIR = Path(__file__).resolve().parents[1] / "peers" / "node-opcua"

SECURE_POLICIES = [
    ua.SecurityPolicyType.Basic256Sha256_Sign, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign, ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign, ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
]


def make_server_certificate(directory: Path, app_uri: str) -> tuple[Path, Path]:
    """A server certificate and key (a new key pair each call: a 're-keyed' server)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, "test server", {}, [x509.UniformResourceIdentifier(app_uri), x509.DNSName("127.0.0.1")],
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    cert_path, key_path = directory / "server.der", directory / "server.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_path, key_path


class Users(UserManager):
    def __init__(self, users: dict[str, str]):
        self.users = users
        self.seen: list[str] = []

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole
        self.seen.append(username or "")
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User)
        return None


class SecureOpcUaTestServer(OpcUaTestServer):
    """The asyncua test server with only Sign/SignAndEncrypt endpoints and username login."""

    def __init__(self, port: int, cert_dir: Path, *, users: dict[str, str]):
        super().__init__(port)
        self.cert_dir = cert_dir
        self.users = Users(users)
        self.cert_path, self.key_path = make_server_certificate(cert_dir, f"urn:shangyun:test:{self.machine}")

    def _make_server(self) -> Server:
        return Server(user_manager=self.users)

    async def _configure(self, server: Server) -> None:
        await server.load_certificate(str(self.cert_path))
        await server.load_private_key(str(self.key_path))
        server.set_security_policy(SECURE_POLICIES)
        server.set_identity_tokens([ua.UserNameIdentityToken])

    def rekey(self) -> None:
        self.cert_path, self.key_path = make_server_certificate(self.cert_dir, f"urn:shangyun:test:{self.machine}")


class NodeOpcUaServer:
    """node-opcua's server (tests/peers/node-opcua/server.js) in a child process. It exits when
    its stdin closes, so a crashed test leaves no server behind."""

    def __init__(self, port: int, pki: Path, *, security: bool = False, users: dict[str, str] | None = None):
        self.port = port
        self.pki = pki
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/test/m1"
        self.options = {"port": port, "pki": str(pki), "security": security, "users": users}
        self.proc: asyncio.subprocess.Process | None = None

    @staticmethod
    def available() -> str | None:
        """Why the peer cannot run here, or None (make test-packages installs it)."""
        if shutil.which("node") is None:
            return "node is not installed (make test-packages)"
        if not (PEER_DIR / "node_modules" / "node-opcua-server").is_dir():
            return f"node-opcua is not installed: npm ci --prefix {PEER_DIR} (make test-packages)"
        return None

    async def start(self, timeout_s: float = 60.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(PEER_DIR / "server.js"), json.dumps(self.options), cwd=PEER_DIR,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NODEOPCUA_LOG": "0"})
        await asyncio.wait_for(self._expect("READY"), timeout_s)

    async def _expect(self, prefix: str) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        seen = []
        while True:
            line = (await self.proc.stdout.readline()).decode(errors="replace")
            if not line:
                raise RuntimeError(f"node-opcua server exited: {''.join(seen[-20:])}")
            if line.startswith(prefix):
                return line
            seen.append(line)

    async def write(self, name: str, value: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"set": name, "value": value}) + "\n").encode())
        await self.proc.stdin.drain()
        await asyncio.wait_for(self._expect(f"OK {name}"), 10)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
