"""Sinks are plugins like the connectors: each type has a sample.yaml that validates and makes a
sink, and only its own module imports the client library."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge import sinks

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sinks.names())
async def test_sample_yaml_validates_and_makes_a_sink(name: str, monkeypatch) -> None:
    monkeypatch.setenv("INFLUX_TOKEN", "sample-token")
    monkeypatch.setenv("CENTRAL_MQTT_PASSWORD", "sample-password")
    path = sinks.sample_path(name)
    assert path.exists(), f"{path} is missing"
    (block,) = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg = sinks.parse(block)
    assert cfg.type == name and cfg.sink_name == name
    if name == "mqtt":
        # The sample points at a TLS broker whose CA file exists only on a real edge box.
        cfg = cfg.model_copy(update={"ca_file": None})
    sink = sinks.make_sink(cfg)
    try:
        assert sink.name == name and sink.max_batch == cfg.max_batch
    finally:
        await sink.close()


def test_the_issue_config_block_validates(monkeypatch) -> None:
    monkeypatch.setenv("INFLUX_TOKEN", "x")
    # As in issue 8, except that ${...} is quoted: unquoted inside {...} it is not valid YAML.
    block = yaml.safe_load("""
sinks:
  - {type: influxdb, url: http://influx:8086, org: factory, bucket: shangyun, token: "${INFLUX_TOKEN}"}
  - {type: mqtt, broker: mqtts://central:8883, topic: "shangyun/{site}/{device}"}
""")["sinks"]
    influx, mqtt = (sinks.parse(b) for b in block)
    assert influx.token.get_secret_value() == "x" and influx.gzip
    assert mqtt.tls and (mqtt.host, mqtt.port) == ("central", 8883)


def test_config_models_import_no_client_library() -> None:
    code = ("import sys, edge.sinks, edge.forwarder; "
            "assert 'influxdb_client' not in sys.modules and 'paho' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_only_the_influxdb_module_imports_influxdb_client() -> None:
    importers = []
    for package in ("edge", "connectors", "gateway", "verifier", "simulator"):
        for p in (ROOT / package).rglob("*.py"):
            text = p.read_text(encoding="utf-8")
            if "import influxdb_client" in text or "from influxdb_client" in text:
                importers.append(p.relative_to(ROOT).as_posix())
    assert importers == ["edge/sinks/influxdb.py"]


def test_a_missing_tls_file_is_a_config_error(tmp_path) -> None:
    from edge.errors import ConfigError
    with pytest.raises(ConfigError, match=r"sinks\[mqtt\]\.ca_file: no such file: .*nowhere\.pem"):
        sinks.make_sink({"type": "mqtt", "broker": "mqtts://central:8883",
                         "ca_file": str(tmp_path / "nowhere.pem")})
