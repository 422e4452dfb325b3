"""`shangyun check` refuses configs that validate but could never work, and warns (without
failing) about what may only be a site's temporary state, such as DNS being down."""
from __future__ import annotations

import os

import pytest

from gateway.check import topic_filter_problem
from gateway.cli import main

CONFIG = """\
gateway:
  store: {path: STORE}
devices:
  - id: oven-01
    type: mqtt
    connection:
      host: 127.0.0.1
      port: 1883
      topic: shangyun/sim/oven-01/telemetry
    signals:
      - {name: power_kw, address: power_kw}
  - id: press-01
    type: modbus
    connection: {host: 127.0.0.1, port: 502}
    signals:
      - {name: state, address: {table: holding, offset: 0}, states: {1: running}}
"""


def check(tmp_path, capsys, text: str) -> tuple[int, str, str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text.replace("STORE", str(tmp_path / "plant.db")), encoding="utf-8")
    rc = main(["check", "-c", str(path)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_good_config_passes(tmp_path, capsys):
    rc, out, err = check(tmp_path, capsys, CONFIG)
    assert rc == 0, err
    assert "OK, 2 devices" in out and err == ""


@pytest.mark.parametrize("topic", ["a/#/b", "a/b#", "plant/line+/x", "a/+b", ""])
def test_an_invalid_topic_filter_is_an_error_naming_its_line(tmp_path, capsys, topic):
    text = CONFIG.replace("topic: shangyun/sim/oven-01/telemetry", f"topic: '{topic}'")
    rc, out, err = check(tmp_path, capsys, text)
    assert rc == 2
    assert "OK" not in out
    if topic:  # an empty topic is refused for its length
        assert "gateway.yaml:9:" in err and "not a valid MQTT topic filter" in err


@pytest.mark.parametrize("topic", ["#", "a/#", "+", "+/+/x", "a//b", "/a", "上云/设备/1"])
def test_valid_topic_filters(topic):
    assert topic_filter_problem(topic) is None


def test_a_missing_store_directory_is_an_error(tmp_path, capsys):
    text = CONFIG.replace("{path: STORE}", "{path: no-such-dir/plant.db}")
    rc, _, err = check(tmp_path, capsys, text)
    assert rc == 2
    assert "gateway.yaml:2: error: gateway.store.path" in err and "does not exist" in err


def test_a_store_directory_that_is_a_file_is_an_error(tmp_path, capsys):
    (tmp_path / "data").write_text("not a directory")
    rc, _, err = check(tmp_path, capsys, CONFIG.replace("{path: STORE}", "{path: data/x.db}"))
    assert rc == 2 and "is not a directory" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_store_directory_is_an_error(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        rc, _, err = check(tmp_path, capsys,
                           CONFIG.replace("{path: STORE}", "{path: locked/plant.db}"))
    finally:
        locked.chmod(0o700)
    assert rc == 2 and "not writable" in err


def test_an_unresolvable_host_is_a_warning_not_an_error(tmp_path, capsys):
    # .invalid never resolves (RFC 6761), with or without a DNS server.
    text = CONFIG.replace("host: 127.0.0.1\n", "host: plc-7.invalid\n", 1)
    rc, out, err = check(tmp_path, capsys, text)
    assert rc == 0
    assert "gateway.yaml:7: warning: oven-01: host 'plc-7.invalid' does not resolve" in err
    assert "OK, 2 devices" in out and "1 warning" in out


def test_an_opcua_endpoint_host_is_resolved_too(tmp_path, capsys):
    text = CONFIG + (
        "  - id: cnc-01\n    type: opcua\n    profile: sim-opcua\n"
        "    connection: {endpoint: 'opc.tcp://cnc-01.invalid:4840/x'}\n")
    rc, _, err = check(tmp_path, capsys, text)
    assert rc == 0
    assert "gateway.yaml:20: warning: cnc-01: host 'cnc-01.invalid'" in err


def test_no_resolve_skips_the_lookups(tmp_path, capsys):
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.replace("STORE", str(tmp_path / "plant.db"))
                    .replace("host: 127.0.0.1\n", "host: plc-7.invalid\n", 1), encoding="utf-8")
    assert main(["check", "--no-resolve", "-c", str(path)]) == 0
    assert "warning" not in capsys.readouterr().err
