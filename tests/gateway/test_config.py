"""Config loading: good files become DeviceSpecs; every kind of bad file names its line."""
from __future__ import annotations

import textwrap

import pytest

from edge.errors import ConfigError
from gateway.config import load_config, template_names

GOOD = textwrap.dedent("""\
    gateway:
      store: {path: data/plant.db, retention_days: 7}
    devices:
      - id: press-01
        name: Press 1
        type: modbus
        line: L1
        ideal_cycle_s: 12
        connection: {host: 127.0.0.1, port: 5020, device_id: 1}
        signals:
          - {name: state, address: {table: holding, offset: 0, type: uint16},
             states: {1: running, 2: idle}}
          - {name: power_kw, address: {table: holding, offset: 4, type: float32}}
      - id: cnc-07
        type: opcua
        profile: sim-opcua
        vars: {machine: m07}
        connection: {endpoint: "opc.tcp://127.0.0.1:4840/shangyun/m07"}
      - id: pack-3
        type: mqtt
        profile: sim-mqtt
        connection: {host: 127.0.0.1, port: 1883, topic: shangyun/sim/pack-3/telemetry}
    """)


def load(tmp_path, text: str):
    p = tmp_path / "gateway.yaml"
    p.write_text(text, encoding="utf-8")
    return load_config(p)


def error_of(tmp_path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value


def test_good_config_becomes_device_specs(tmp_path):
    cfg = load(tmp_path, GOOD)
    assert [d.id for d in cfg.devices] == ["press-01", "cnc-07", "pack-3"]
    press = cfg.devices[0]
    assert press.protocol == "modbus" and press.line == "L1" and press.ideal_cycle_s == 12
    assert press.signal("state").states == {"1": "running", "2": "idle"}
    assert press.connection["port"] == 5020
    # Templates fill signals, with the machine variable substituted into node ids.
    cnc = cfg.devices[1]
    assert cnc.signal("count_total") is not None
    assert "m07.CountTotal" in str(cnc.signal("count_total").address)
    assert cfg.devices[2].signal("power_kw") is not None
    # Relative store paths are relative to the config file, not the working directory.
    assert cfg.store_path == str((tmp_path / "data" / "plant.db").resolve())
    assert cfg.settings.store.retention_days == 7


def test_unknown_key_names_its_line(tmp_path):
    text = GOOD.replace("    line: L1\n", "    line: L1\n    colour: red\n")
    err = error_of(tmp_path, text)
    assert err.line == 8
    assert "devices[0].colour" in str(err) and "unknown key" in str(err)
    assert str(err).startswith(str(tmp_path / "gateway.yaml") + ":8")


def test_wrong_type_in_connection_names_its_line(tmp_path):
    text = GOOD.replace("port: 5020", "port: fifty")
    err = error_of(tmp_path, text)
    assert err.line == 9
    assert "devices[0].connection.port" in str(err)


def test_unknown_connector_lists_valid_names(tmp_path):
    err = error_of(tmp_path, GOOD.replace("type: modbus", "type: profibus"))
    assert err.line == 6
    assert "profibus" in str(err)
    for name in ("opcua", "modbus", "mqtt"):
        assert name in str(err)


def test_bad_state_name_names_its_line(tmp_path):
    err = error_of(tmp_path, GOOD.replace("2: idle", "2: snoozing"))
    assert err.line == 12
    assert "snoozing" in str(err) and "running" in str(err)


def test_yaml_syntax_error_names_its_line(tmp_path):
    err = error_of(tmp_path, GOOD.replace("    line: L1\n", "    line: [L1\n"))
    assert err.line is not None and 7 <= err.line <= 10
    assert "invalid YAML" in str(err)


def test_duplicate_device_id(tmp_path):
    err = error_of(tmp_path, GOOD.replace("id: pack-3", "id: press-01"))
    assert err.line == 19
    assert "duplicate device id" in str(err) and "line 4" in str(err)


def test_unknown_profile_lists_templates(tmp_path):
    err = error_of(tmp_path, GOOD.replace("profile: sim-mqtt", "profile: sim-zigbee"))
    assert err.line == 21
    assert "sim-mqtt" in str(err)


def test_device_without_signals(tmp_path):
    text = GOOD.replace("    profile: sim-mqtt\n", "")
    err = error_of(tmp_path, text)
    assert "no signals" in str(err)


def test_empty_and_missing_files(tmp_path):
    assert "empty" in str(error_of(tmp_path, ""))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_several_problems_are_all_reported(tmp_path):
    text = GOOD.replace("ideal_cycle_s: 12", "ideal_cycle_s: -1").replace("line: L1", "line: L1\n    bogus: 1")
    err = error_of(tmp_path, text)
    assert "2 problems" in str(err)
    assert "line 8" in str(err) and "line 9" in str(err)


def test_every_template_validates_for_its_connector(tmp_path):
    blocks = []
    conn = {"sim-opcua": ("opcua", '{endpoint: "opc.tcp://127.0.0.1:4840/x"}'),
            "sim-modbus": ("modbus", "{host: 127.0.0.1, port: 502}"),
            "sim-mqtt": ("mqtt", "{host: 127.0.0.1, port: 1883, topic: a/b}")}
    assert set(template_names()) >= set(conn)
    for i, name in enumerate(template_names()):
        proto, c = conn[name]
        blocks.append(f"  - {{id: d{i}, type: {proto}, profile: {name}, connection: {c}}}\n")
    cfg = load(tmp_path, "devices:\n" + "".join(blocks))
    for dev in cfg.devices:
        assert {"state", "count_total", "power_kw", "energy_kwh"} <= {s.name for s in dev.signals}


def test_relative_file_paths_in_connections_resolve_against_the_config_and_the_data_dir(tmp_path):
    """Under systemd the working directory is /var/lib/shangyun, at a shell it is anywhere: a
    relative `ca_file` means the file beside the config, a relative `pki_dir` (written by the
    gateway) the directory beside the store."""
    from gateway.config import load_config

    (tmp_path / "etc").mkdir()
    cfg = tmp_path / "etc" / "gw.yaml"
    cfg.write_text("""
gateway:
  store: {path: ../data/gw.db}
devices:
  - id: ua1
    type: opcua
    connection: {endpoint: "opc.tcp://127.0.0.1:4840", node_root: /Objects/2:Machine1,
                 password_file: secrets/ua.pw, username: op}
    identity: {application_uri: "urn:kep"}
    signals: [{name: state, address: {path: State}}]
  - id: mq1
    type: mqtt
    connection: {host: 127.0.0.1, topic: t/mq1, ca_file: certs/ca.pem,
                 password_file: /abs/mq.pw}
    signals: [{name: state, address: state}]
""", encoding="utf-8")
    loaded = load_config(cfg)
    by_id = {d.id: d for d in loaded.devices}
    ua, mq = by_id["ua1"].connection, by_id["mq1"].connection
    assert ua["pki_dir"] == str(tmp_path.resolve() / "data" / "opcua-pki")
    assert ua["password_file"] == str(tmp_path.resolve() / "etc" / "secrets" / "ua.pw")
    assert mq["ca_file"] == str(tmp_path.resolve() / "etc" / "certs" / "ca.pem")
    assert mq["password_file"] == "/abs/mq.pw"
    # The rooted device expects the identity it will show: its node root is in the fingerprint.
    assert by_id["ua1"].expected_identity.fingerprint().endswith("#node_root=/Objects/2:Machine1")
