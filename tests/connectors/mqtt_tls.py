"""A private Mosquitto that demands mutual TLS, with certificates made here by openssl: a CA, the
broker's certificate (for 127.0.0.1), a client certificate signed by the CA, and a second CA
plus a client certificate from it that the broker must not trust. A password file (made by
Debian's mosquitto_passwd) guards a second TLS listener that needs no client certificate."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from simulator.ports import free_port
from tests.sinks.servers import ConfiguredMosquitto

USER, PASSWORD = "plant", "s3cret-pw"


def openssl(*args: str, cwd: Path) -> str:
    return subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _ca(d: Path, name: str, cn: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-subj", f"/CN={cn}", "-days", "2", cwd=d)


def _signed(d: Path, name: str, subject: str, ca: str, ext: str | None = None) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", subject, cwd=d)
    extra = ["-extfile", ext] if ext else []
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *extra, cwd=d)


def make_certificates(d: Path) -> None:
    _ca(d, "ca", "shangyun plant CA")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _signed(d, "server", "/CN=127.0.0.1", "ca", "san.cnf")
    _signed(d, "client", "/O=Plant 7/CN=gateway-7", "ca")
    _ca(d, "other-ca", "someone else")
    _signed(d, "stranger", "/CN=stranger", "other-ca")


def sha256_of(cert: Path) -> str:
    out = openssl("x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256", cwd=cert.parent)
    return out.strip().split("=", 1)[1].replace(":", "").lower()


@dataclass
class TlsBroker:
    dir: Path
    mtls_port: int       # client certificate required, anonymous otherwise
    password_port: int   # TLS, no client certificate, username and password required
    plain_port: int      # for the test's own publisher
    broker: ConfiguredMosquitto

    def cert(self, name: str) -> str:
        return str(self.dir / name)


def start_tls_broker(d: Path) -> TlsBroker:
    make_certificates(d)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), USER, PASSWORD], check=True,
                   capture_output=True)
    mtls, pw, plain = free_port(), free_port(), free_port()
    tls = f"cafile {d / 'ca.pem'}\ncertfile {d / 'server.pem'}\nkeyfile {d / 'server.key'}\n"
    conf = ("per_listener_settings true\n"
            f"listener {mtls} 127.0.0.1\nallow_anonymous true\n{tls}"
            "require_certificate true\n"
            f"listener {pw} 127.0.0.1\nallow_anonymous false\npassword_file {d / 'passwd'}\n{tls}"
            f"listener {plain} 127.0.0.1\nallow_anonymous true\n")
    broker = ConfiguredMosquitto(conf, [plain, mtls, pw], d)
    broker.start()
    return TlsBroker(d, mtls, pw, plain, broker)
