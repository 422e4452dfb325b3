"""OPC UA security: the client's own certificate, the user's password, and trust in servers.

No asyncua session here, only files and certificates, so every rule can be tested on its own:
- the client certificate and key are made on first use under `<pki_dir>/own/`, with the
  configured application URI as the URI SubjectAltName (servers compare it with the
  ApplicationUri the client announces and refuse a mismatch) and the key usages servers check
  (digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment, clientAuth+serverAuth);
- a server certificate is trusted when it is in the trust-list directory, or (trust on first
  use) when it matches the one pinned for its endpoint at the first secure connect. Anything
  else is refused with an UntrustedServer error naming the thumbprint and how to trust it.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.errors import ConfigError, SourceError

OWN_CERT = "own/cert.der"
OWN_KEY = "own/key.pem"
CERT_DAYS = 5 * 365


class UntrustedServer(SourceError):
    """The server presented a certificate this gateway does not trust."""


def thumbprint(der: bytes) -> str:
    """SHA-1 of the DER certificate: the thumbprint OPC UA servers and their UIs show."""
    return hashlib.sha1(der).hexdigest()


def default_application_uri() -> str:
    return f"urn:{socket.gethostname()}:shangyun"


@dataclass(frozen=True, slots=True)
class OwnCertificate:
    cert_path: Path
    key_path: Path

    @property
    def der(self) -> bytes:
        return self.cert_path.read_bytes()


def own_certificate(pki_dir: Path, application_uri: str) -> OwnCertificate:
    """The client's certificate and key, made on first use; remade if the application URI in
    the configuration no longer matches the certificate's (a server would refuse it)."""
    from asyncua.crypto import cert_gen  # the one asyncua import here: it builds OPC UA certs

    cert_path, key_path = pki_dir / OWN_CERT, pki_dir / OWN_KEY
    if cert_path.is_file() and key_path.is_file() and _uri_of(cert_path.read_bytes()) == application_uri:
        return OwnCertificate(cert_path, key_path)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    host = socket.gethostname()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, f"shangyun@{host}", {"organizationName": "shangyun"},
        [x509.UniformResourceIdentifier(application_uri), x509.DNSName(host)],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH], days=CERT_DAYS)
    # The key first, private from birth: a crash between the writes leaves no cert without key.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(cert_gen.dump_private_key_as_pem(key))
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    return OwnCertificate(cert_path, key_path)


def _uri_of(der: bytes) -> str | None:
    try:
        san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def resolve_password(password: str | None, password_env: str | None, password_file: str | None) -> str | None:
    """The user's password from exactly one source. Errors name the source, never the value."""
    if password_env is not None:
        value = os.environ.get(password_env)
        if value is None:
            raise ConfigError(f"password_env: environment variable {password_env} is not set")
        return value
    if password_file is not None:
        try:
            return Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as err:
            raise ConfigError(f"password_file: cannot read {password_file}: {err.strerror}") from None
    return password


class ServerTrust:
    """Decides whether a server certificate is trusted: a trust-list directory (any .der/.pem
    certificate in it), or trust on first use with one pin file per endpoint under pins/."""

    def __init__(self, pki_dir: Path, endpoint: str, *, mode: str, trust_list_dir: Path | None = None):
        self.pki_dir = pki_dir
        self.endpoint = endpoint
        self.mode = mode
        self.trust_list_dir = trust_list_dir or pki_dir / "trusted"
        self.pin_path = pki_dir / "pins" / (re.sub(r"[^A-Za-z0-9._-]+", "_", endpoint).strip("_") + ".der")

    def check(self, der: bytes) -> None:
        """Returns when `der` is trusted (pinning it on first use); raises UntrustedServer."""
        seen = thumbprint(der)
        if self.mode == "trust_list":
            if seen in self._trusted_thumbprints():
                return
            rejected = self._keep_rejected(der)
            raise UntrustedServer(
                f"{self.endpoint}: server certificate {seen} (SHA-1) is not in the trust list "
                f"{self.trust_list_dir}; if it is this machine's, trust it with: "
                f"cp {rejected} {self.trust_list_dir}/")
        if not self.pin_path.is_file():
            self.pin_path.parent.mkdir(parents=True, exist_ok=True)
            self.pin_path.write_bytes(der)
            return
        pinned = thumbprint(self.pin_path.read_bytes())
        if pinned == seen:
            return
        rejected = self._keep_rejected(der)
        raise UntrustedServer(
            f"{self.endpoint}: server certificate changed: now {seen} (SHA-1), pinned {pinned}; "
            f"refused. If the server was re-keyed on purpose, trust the new one with: "
            f"cp {rejected} {self.pin_path}")

    def _trusted_thumbprints(self) -> set[str]:
        out: set[str] = set()
        if not self.trust_list_dir.is_dir():
            return out
        for path in self.trust_list_dir.iterdir():
            der = _load_der(path)
            if der is not None:
                out.add(thumbprint(der))
        return out

    def _keep_rejected(self, der: bytes) -> Path:
        path = self.pki_dir / "rejected" / f"{thumbprint(der)}.der"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(der)
        return path


def _load_der(path: Path) -> bytes | None:
    """A certificate file as DER (PEM converted); None for anything that is not one."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        try:
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        except ValueError:
            return None
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        return None
    return data
