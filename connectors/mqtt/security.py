"""TLS and credentials for the southbound MQTT client (no paho here: the source applies them).

Credentials are read when a connection is made, not when the config is loaded, so a password
rotated in its file or environment is picked up on the next reconnect, and a secret never sits in
the device registry (only the name of its variable or file does).

The client certificate's subject and SHA-256 fingerprint, and the broker's certificate
fingerprint, are identity evidence in `details`, deliberately not the comparable
`certificate_sha256`: a gateway usually presents one certificate for every device it reaches
through a broker, and as the fingerprint core that would make all those machines "the same"
to the verifier's distinctness check (verifier/distinct, `shared_identity`).
"""
from __future__ import annotations

import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from edge.errors import SourceError

if TYPE_CHECKING:
    from connectors.mqtt.config import MqttConnection

_MAX_SECRET_BYTES = 4096     # a password file is a line, not a log someone pointed us at


@dataclass(frozen=True)
class Credentials:
    username: str | None
    password: str | None


def credentials(cfg: "MqttConnection") -> Credentials:
    """Username and password from the config, the environment or a file (one source each)."""
    username = cfg.username
    if cfg.username_env:
        username = _env(cfg.username_env, "username_env")
    password = cfg.password
    if cfg.password_env:
        password = _env(cfg.password_env, "password_env")
    elif cfg.password_file:
        password = _secret_file(cfg.password_file)
    if password is not None and username is None:
        raise SourceError("a password is configured without a username (MQTT sends none without one)")
    return Credentials(username, password)


def _env(name: str, option: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise SourceError(f"{option}: environment variable {name} is not set")
    return value


def _secret_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_SECRET_BYTES + 1)
    except OSError as err:
        raise SourceError(f"password_file {path}: {err.strerror or err}") from None
    if len(raw) > _MAX_SECRET_BYTES:
        raise SourceError(f"password_file {path}: longer than {_MAX_SECRET_BYTES} bytes, not a password")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"password_file {path}: not UTF-8 text") from None
    # Editors and `echo secret > file` leave a trailing newline that is never part of the password.
    return text.rstrip("\r\n")


def tls_context(cfg: "MqttConnection") -> ssl.SSLContext:
    """Verifies the broker (its chain against `ca_file`, or the system's CAs, and its host name);
    presents `cert_file`/`key_file` when given (mutual TLS)."""
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_file)
    except (OSError, ssl.SSLError) as err:
        raise SourceError(f"ca_file {cfg.ca_file}: cannot load: {_why(err)}") from None
    if cfg.cert_file:
        try:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        except (OSError, ssl.SSLError) as err:
            raise SourceError(f"cert_file {cfg.cert_file} / key_file {cfg.key_file or '(in cert_file)'}: "
                              f"cannot load: {_why(err)}") from None
    return ctx


def _why(err: Exception) -> str:
    if isinstance(err, ssl.SSLError):
        return err.reason or str(err)
    return getattr(err, "strerror", None) or str(err)


def client_certificate_details(cert_file: str) -> dict[str, str]:
    """Subject and SHA-256 fingerprint (of the DER form, as `openssl x509 -fingerprint -sha256`)
    of the first certificate in `cert_file`."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError) as err:
        raise SourceError(f"cert_file {cert_file}: not a PEM certificate: {err}") from None
    der = cert.public_bytes(Encoding.DER)
    return {"client_certificate_subject": cert.subject.rfc4514_string(),
            "client_certificate_sha256": hashlib.sha256(der).hexdigest()}


def peer_certificate_sha256(sock: object) -> str:
    """The broker's certificate fingerprint on a TLS socket; '' on a plain one."""
    if isinstance(sock, ssl.SSLSocket):
        der = sock.getpeercert(binary_form=True)
        if der:
            return hashlib.sha256(der).hexdigest()
    return ""



def tls_evidence(cfg: "MqttConnection", sock: object) -> dict[str, str]:
    """Identity details a TLS connection gives: the broker certificate's SHA-256 and our client
    certificate's subject and fingerprint; {} without TLS."""
    if not cfg.tls:
        return {}
    details = {"broker_certificate_sha256": peer_certificate_sha256(sock)}
    if cfg.cert_file:
        details.update(client_certificate_details(cfg.cert_file))
    return details
