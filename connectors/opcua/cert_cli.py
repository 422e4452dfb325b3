"""`shangyun opcua cert`: the gateway's OPC UA client certificate, made if missing, shown the way
a server's administrator needs it to trust the gateway before its first secure connect.

The certificate comes from connectors/opcua/security.py's own_certificate, the same call the
source makes at connect, so what is printed is exactly what the gateway will present: the same
pki directory (resolved as the source resolves it), the same application URI (remade when the
configured URI no longer matches the certificate's SAN, as the source would).

The gateway's config is read through a loader gateway/cli.py passes in (connectors do not import
the gateway).
"""
from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from connectors.opcua.config import OpcUaConnection
from connectors.opcua.security import OwnCertificate, default_application_uri, own_certificate, thumbprint
from connectors.validation import connection_of
from edge.errors import ConfigError
from edge.model import DeviceSpec

DevicesOf = Callable[[str], Iterable[DeviceSpec]]

# Where common servers keep the client certificates they trust (the file to copy is cert.der).
TRUST_HINTS = (
    ("Siemens S7-1500 / WinCC / TIA Portal", "trust it in the server's certificate manager "
     "(TIA: Security settings > Certificate manager > import as trusted), or PKI folder trusted/certs"),
    ("KEPServerEX", "OPC UA Configuration > Trusted Clients > Import (or move it from Rejected to "
     "Trusted); on disk: ...\\UA\\Server\\cert\\trusted\\certs"),
    ("Prosys OPC UA Simulation Server", "Certificates tab: mark it Trusted; on disk: "
     "PKI/CA/trusted/certs"),
    ("node-opcua / open62541 / asyncua", "<server pki>/trusted/certs"),
)


@dataclass
class CertUse:
    """One client certificate and the devices that present it."""

    pki_dir: Path
    application_uri: str
    devices: list[str] = field(default_factory=list)


def uses_from_devices(devices: Iterable[DeviceSpec], application_uri: str | None = None) -> list[CertUse]:
    """The distinct (pki_dir, application URI) pairs secured OPC UA devices connect with, in
    config order. Devices with security None present no certificate but are listed when nothing
    else is: the certificate is made for them all the same, ready for the day they are secured."""
    uses: dict[tuple[Path, str], CertUse] = {}
    secured: set[tuple[Path, str]] = set()
    for dev in devices:
        if dev.protocol != "opcua":
            continue
        cfg = connection_of(OpcUaConnection, dev)
        # load_config made pki_dir absolute (a relative one: in the data directory, beside the store).
        key = (Path(cfg.pki_dir).absolute(), application_uri or cfg.application_uri or default_application_uri())
        uses.setdefault(key, CertUse(*key)).devices.append(dev.id)
        if cfg.security_policy != "None":
            secured.add(key)
    chosen = [u for k, u in uses.items() if k in secured] if secured else list(uses.values())
    by_dir: dict[Path, list[CertUse]] = {}
    for u in chosen:
        by_dir.setdefault(u.pki_dir, []).append(u)
    for pki, same in by_dir.items():
        if len(same) > 1:
            # One certificate per pki_dir: with two URIs each connect would remake it for the other.
            raise ConfigError(f"{pki}: devices {', '.join(d for u in same for d in u.devices)} share this "
                              f"pki_dir but not the application_uri ({', '.join(u.application_uri for u in same)}); "
                              f"give them one application_uri or separate pki_dir")
    return chosen


@dataclass(frozen=True)
class CertInfo:
    cert: OwnCertificate
    pem_path: Path
    subject: str
    uris: tuple[str, ...]
    dns: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    sha1: str
    sha256: str


def ensure(use: CertUse) -> CertInfo:
    """The certificate for `use`, made if missing; a PEM copy is written beside the DER one for
    servers whose import dialog wants PEM."""
    own = own_certificate(use.pki_dir, use.application_uri)
    der = own.der
    cert = x509.load_der_x509_certificate(der)
    pem_path = own.cert_path.with_suffix(".pem")
    pem = cert.public_bytes(Encoding.PEM)
    if not pem_path.is_file() or pem_path.read_bytes() != pem:
        pem_path.write_bytes(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        dns = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        uris, dns = (), ()
    return CertInfo(own, pem_path, cert.subject.rfc4514_string(), uris, dns, cert.not_valid_before_utc,
                    cert.not_valid_after_utc, thumbprint(der), hashlib.sha256(der).hexdigest())


def describe(use: CertUse, info: CertInfo) -> str:
    rows = [
        f"client certificate for {', '.join(use.devices) if use.devices else use.pki_dir}",
        f"  subject            {info.subject}",
        f"  application URI    {', '.join(info.uris) or '(none: servers will refuse it)'}   (SubjectAltName URI)",
        f"  DNS names          {', '.join(info.dns) or '-'}",
        f"  valid              {info.not_before:%Y-%m-%d %H:%M} UTC to {info.not_after:%Y-%m-%d %H:%M} UTC",
        f"  SHA-1 thumbprint   {info.sha1}   (what server UIs show)",
        f"  SHA-256            {info.sha256}",
        f"  certificate        {info.cert.cert_path}   (DER: copy this into the server's trust list)",
        f"                     {info.pem_path}   (the same certificate as PEM)",
        f"  private key        {info.cert.key_path}   (stays here; never copy it)",
        "  trust it on the server (or connect once, then move it from the server's rejected list to trusted):",
    ]
    rows += [f"    {vendor:38} {where}" for vendor, where in TRUST_HINTS]
    return "\n".join(rows)


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", *, devices_of: DevicesOf) -> None:
    """`shangyun opcua cert`; `devices_of(path)` reads a gateway config's devices."""
    p = sub.add_parser("opcua", help="OPC UA tools: the gateway's client certificate")
    osub = p.add_subparsers(dest="opcua_command", metavar="COMMAND", required=True)
    q = osub.add_parser("cert", help="make the OPC UA client certificate if missing and print what a "
                                     "server needs to trust it")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("-c", "--config", help="gateway YAML file: the certificate(s) its OPC UA devices use")
    src.add_argument("--data-dir", metavar="DIR", help="the gateway's data directory (certificate under DIR/opcua-pki)")
    q.add_argument("--application-uri", default=None,
                   help="the ApplicationUri (and SAN) to make it for; default the config's, else urn:<hostname>:shangyun")
    q.set_defaults(func=lambda args: run(args, devices_of))


def run(args: argparse.Namespace, devices_of: DevicesOf) -> int:
    if args.config:
        uses = uses_from_devices(devices_of(args.config), args.application_uri)
        if not uses:
            raise ConfigError(f"{args.config}: no OPC UA devices; give --data-dir to make a certificate anyway")
    else:
        pki = Path(args.data_dir) / OpcUaConnection.model_fields["pki_dir"].default
        uses = [CertUse(pki.absolute(), args.application_uri or default_application_uri())]
    blocks = [describe(use, ensure(use)) for use in uses]
    print("\n\n".join(blocks))
    return 0
