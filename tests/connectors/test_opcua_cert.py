"""`shangyun opcua cert`: the client certificate made if missing and described as a server's
administrator needs it; the file it names, copied into a strict node-opcua server's
trusted/certs, is what lets the gateway's secure session in."""
from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from connectors.opcua.security import thumbprint
from connectors.opcua.source import OpcUaSource
from edge.errors import SourceError
from gateway.cli import main
from tests.connectors.devices import device
from tests.connectors.opcua_servers import NodeOpcUaServer
from tests.connectors.servers import NS_URI, free_port


@pytest.fixture(autouse=True)
def _leave_logging_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.cli._setup_logging", lambda level: None)


def field(out: str, name: str) -> str:
    m = re.search(rf"^\s*{name}\s+(\S+)", out, re.MULTILINE)
    assert m, f"{name} not in {out}"
    return m.group(1)


def write_config(tmp_path: Path, devices: list[dict]) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"devices": devices}), encoding="utf-8")
    return path


def opcua_device(dev_id: str, pki: Path, uri: str | None, *, secure: bool = True) -> dict:
    conn: dict = {"endpoint": "opc.tcp://127.0.0.1:4840", "pki_dir": str(pki)}
    if secure:
        conn.update(security_policy="Basic256Sha256", security_mode="SignAndEncrypt")
    if uri:
        conn["application_uri"] = uri
    return {"id": dev_id, "type": "opcua", "connection": conn,
            "signals": [{"name": "power_kw", "address": "ns=2;s=x"}]}


def test_cert_from_config_is_made_once_and_described(tmp_path: Path, capsys) -> None:
    pki = tmp_path / "pki"
    cfg = write_config(tmp_path, [opcua_device("press-1", pki, "urn:edge-7:shangyun"),
                                  opcua_device("press-2", pki, "urn:edge-7:shangyun"),
                                  opcua_device("open-1", tmp_path / "other", None, secure=False)])
    assert main(["opcua", "cert", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    der = (pki / "own" / "cert.der").read_bytes()
    cert = x509.load_der_x509_certificate(der)
    assert "press-1, press-2" in out and "open-1" not in out   # the secured devices' certificate
    assert field(out, "SHA-1 thumbprint") == thumbprint(der)
    assert field(out, "application URI") == "urn:edge-7:shangyun"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:edge-7:shangyun"]
    assert field(out, "certificate") == str(pki / "own" / "cert.der")
    pem = (pki / "own" / "cert.pem").read_bytes()
    assert x509.load_pem_x509_certificate(pem) == cert
    assert (pki / "own" / "key.pem").stat().st_mode & 0o077 == 0
    assert "trusted/certs" in out and "KEPServerEX" in out and "Prosys" in out and "Siemens" in out
    assert f"{cert.not_valid_after_utc:%Y-%m-%d}" in out
    assert not (tmp_path / "other").exists()

    assert main(["opcua", "cert", "-c", str(cfg)]) == 0      # exists: shown again, not remade
    assert field(capsys.readouterr().out, "SHA-1 thumbprint") == thumbprint(der)
    assert (pki / "own" / "cert.der").read_bytes() == der


def test_cert_in_a_data_dir_with_an_application_uri(tmp_path: Path, capsys) -> None:
    assert main(["opcua", "cert", "--data-dir", str(tmp_path), "--application-uri", "urn:box:gw"]) == 0
    out = capsys.readouterr().out
    der = (tmp_path / "opcua-pki" / "own" / "cert.der").read_bytes()
    assert field(out, "SHA-1 thumbprint") == thumbprint(der)
    assert field(out, "application URI") == "urn:box:gw"
    # Another URI: the certificate is remade, as the gateway would remake it at connect.
    assert main(["opcua", "cert", "--data-dir", str(tmp_path), "--application-uri", "urn:box:gw2"]) == 0
    assert field(capsys.readouterr().out, "application URI") == "urn:box:gw2"
    assert (tmp_path / "opcua-pki" / "own" / "cert.der").read_bytes() != der


def test_conflicting_uris_in_one_pki_dir_and_no_opcua_devices_are_config_errors(tmp_path: Path, capsys) -> None:
    pki = tmp_path / "pki"
    cfg = write_config(tmp_path, [opcua_device("a", pki, "urn:x:1"), opcua_device("b", pki, "urn:x:2")])
    assert main(["opcua", "cert", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "devices a, b share this pki_dir but not the application_uri" in err
    assert not pki.exists()
    mqtt_only = write_config(tmp_path, [{"id": "m", "type": "mqtt", "connection": {"host": "b", "topic": "t"},
                                         "signals": [{"name": "power_kw", "address": "p"}]}])
    assert main(["opcua", "cert", "-c", str(mqtt_only)]) == 2
    assert "no OPC UA devices" in capsys.readouterr().err


async def test_the_printed_certificate_is_the_one_a_strict_server_must_trust(tmp_path: Path, capsys) -> None:
    why = NodeOpcUaServer.available()
    assert not why, why
    pki = tmp_path / "pki"
    uri = "urn:edge-9:shangyun"
    strict = {"security": True, "users": {"op": "pw"}}
    conn = {"security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt", "application_uri": uri,
            "pki_dir": str(pki), "username": "op", "password": "pw", "timeout_s": 3.0}
    signals = [{"name": "power_kw", "address": f"nsu={NS_URI};s=m1.PowerKw"}]
    cfg = write_config(tmp_path, [{"id": "np", "type": "opcua", "signals": signals,
                                   "connection": {**conn, "endpoint": "opc.tcp://127.0.0.1:4840"}}])
    assert await asyncio.to_thread(main, ["opcua", "cert", "-c", str(cfg)]) == 0
    printed = Path(field(capsys.readouterr().out, "certificate"))

    async def connect(server_pki: Path):
        server = NodeOpcUaServer(free_port(), server_pki, **strict)
        server.options["acceptAnyClient"] = False     # unknown client certificates are rejected
        await server.start()
        src = OpcUaSource(device("opcua", {**conn, "endpoint": server.endpoint}, signals))
        try:
            return await src.connect()
        finally:
            await src.close()
            await server.stop()

    with pytest.raises(SourceError):
        await connect(tmp_path / "untrusting-pki")
    trusted = tmp_path / "trusting-pki" / "server" / "trusted" / "certs"   # node-opcua's trust list
    trusted.mkdir(parents=True)
    shutil.copy(printed, trusted / printed.name)
    identity = await connect(tmp_path / "trusting-pki")
    assert identity.application_uri == "urn:shangyun:test:node-opcua"
    assert thumbprint(printed.read_bytes()) == thumbprint((pki / "own" / "cert.der").read_bytes())
