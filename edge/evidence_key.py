"""The gateway's evidence key: one Ed25519 key per data directory that signs ledger checkpoints.

    key = EvidenceKey.load_or_create(data_dir)     # <data_dir>/evidence.key (0600) + evidence.pub
    sig = key.sign(body_bytes)
    verify(key.public_pem, sig, body_bytes)        # True / False, never raises on a bad signature

The private key is PEM PKCS8 without a password: the gateway must start unattended, so the
file's mode (0600, owner only) is its protection. A fingerprint is "ed25519:" + the sha256 of the
raw 32-byte public key; `display_fingerprint` groups it in fours for people to compare.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import ShangyunError

KEY_FILE = "evidence.key"
PUB_FILE = "evidence.pub"
PREFIX = "ed25519:"


class EvidenceKeyError(ShangyunError):
    """The key file exists but cannot be used (not a PEM Ed25519 key, unreadable)."""


def public_raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_key: Ed25519PublicKey) -> str:
    return PREFIX + hashlib.sha256(public_raw(public_key)).hexdigest()


def display_fingerprint(fp: str) -> str:
    """"ed25519:1a2b3c4d…" → "ed25519:1a2b 3c4d …": easier to read aloud and compare."""
    scheme, _, hexpart = fp.partition(":")
    return f"{scheme}:" + " ".join(hexpart[i:i + 4] for i in range(0, len(hexpart), 4))


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_pem(pem: bytes | str) -> Ed25519PublicKey:
    """The Ed25519 public key in `pem`; EvidenceKeyError for anything else."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise EvidenceKeyError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise EvidenceKeyError(f"not an Ed25519 public key ({type(key).__name__})")
    return key


def verify(public_key: Ed25519PublicKey | bytes | str, signature: bytes, data: bytes) -> bool:
    """Whether `signature` is `public_key`'s (an object or its PEM) Ed25519 signature of `data`."""
    key = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_pem(public_key)
    try:
        key.verify(bytes(signature), bytes(data))
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class EvidenceKey:
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    @property
    def public_pem(self) -> bytes:
        return public_pem(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    @classmethod
    def generate(cls) -> "EvidenceKey":
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | Path) -> "EvidenceKey":
        try:
            data = Path(path).read_bytes()
            key = serialization.load_pem_private_key(data, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise EvidenceKeyError(f"{path}: cannot load the evidence key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise EvidenceKeyError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
        return cls(key)

    @classmethod
    def load_or_create(cls, data_dir: str | Path, name: str = "evidence") -> "EvidenceKey":
        """The key `<name>.key` in `data_dir`, made (with `<name>.pub` next to it) the first
        time. Never replaces an existing key: a new key would orphan every checkpoint signed
        so far. Another `name` keeps another party's key (a witness's) apart."""
        d = Path(data_dir)
        path = d / f"{name}.key"
        if path.exists():
            key = cls.load(path)
        else:
            key = cls.generate()
            pem = key.private_key.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption())
            # O_EXCL: two processes starting at once must not both write (one key wins, the
            # other loads it); the mode is set at creation, so the key is never world-readable.
            try:
                d.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return cls.load(path)
            except OSError as exc:
                raise EvidenceKeyError(f"{path}: cannot create the evidence key: {exc}") from exc
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
        pub = d / f"{name}.pub"
        try:
            if not pub.exists() or pub.read_bytes() != key.public_pem:
                pub.write_bytes(key.public_pem)
        except OSError as exc:
            raise EvidenceKeyError(f"{pub}: cannot write the public key: {exc}") from exc
        return key
