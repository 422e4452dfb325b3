"""Config files as engineers' editors save them: encodings (Chinese Windows saves GBK), keys given
twice; each refused file gets a ConfigError naming it and `shangyun check` exits 2."""
from __future__ import annotations

import codecs
import gc
import logging

import pytest
import yaml

from edge.errors import ConfigError
from gateway.cli import main
from gateway.config import load_config
from gateway.yamlconfig import load_yaml

CONFIG = """\
gateway:
  store: {path: plant.db}
devices:
  - id: press-01
    name: 冲压机 1号
    type: modbus
    line: 一车间
    connection: {host: 127.0.0.1, port: 5020}
    signals:
      - {name: state, address: {table: holding, offset: 0, type: uint16}, states: {1: running}}
"""

ENCODINGS = {
    "utf-8": CONFIG.encode("utf-8"),
    "utf-8 with BOM": codecs.BOM_UTF8 + CONFIG.encode("utf-8"),
    "utf-16-le with BOM": codecs.BOM_UTF16_LE + CONFIG.encode("utf-16-le"),
    "utf-16-be with BOM": codecs.BOM_UTF16_BE + CONFIG.encode("utf-16-be"),
    "gbk": CONFIG.encode("gbk"),
    "gb18030": CONFIG.encode("gb18030"),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_chinese_names_read_from_every_common_encoding(tmp_path, encoding, capsys):
    path = tmp_path / "gateway.yaml"
    path.write_bytes(ENCODINGS[encoding])
    cfg = load_config(path)
    assert cfg.devices[0].name == "冲压机 1号" and cfg.devices[0].line == "一车间"
    assert main(["check", "-c", str(path)]) == 0
    assert "冲压机 1号" in capsys.readouterr().out


def test_the_gb18030_guess_is_said_in_an_info_line(tmp_path, caplog):
    path = tmp_path / "gateway.yaml"
    path.write_bytes(ENCODINGS["gbk"])
    with caplog.at_level(logging.INFO, logger="gateway.yamlconfig"):
        load_config(path)
    assert any("GB18030" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


def test_undecodable_bytes_are_refused_with_the_byte_offset(tmp_path, capsys):
    raw = CONFIG.encode("utf-8")
    offset = raw.index(b"plant")
    # 0xFF is neither UTF-8 nor the first byte of any GB18030 sequence.
    path = tmp_path / "gateway.yaml"
    path.write_bytes(raw[:offset] + b"\xff\xff" + raw[offset:])
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))
    assert f"byte offset {offset}" in str(info.value)
    assert main(["check", "-c", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_broken_utf16_after_its_bom_is_refused(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_bytes(codecs.BOM_UTF16_LE + CONFIG.encode("utf-16-le")[:-1])
    with pytest.raises(ConfigError, match="byte offset"):
        load_config(path)


@pytest.mark.parametrize("text, first, second", [
    (CONFIG.replace("    line: 一车间\n", "    line: 一车间\n    name: 冲压机 2号\n"), 5, 8),
    (CONFIG.replace("port: 5020}", "port: 5020, port: 502}"), 8, 8),
    (CONFIG.replace("gateway:\n", "gateway:\n  name: a\n  name: b\n"), 2, 3),
])
def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path, text, first, second, capsys):
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == second
    assert f"line {first}" in str(info.value) and f"line {second}" in str(info.value)
    assert "duplicate key" in str(info.value)
    assert main(["check", "-c", str(path)]) == 2


def test_merge_keys_and_aliases_are_not_duplicates(tmp_path):
    text = CONFIG.replace("devices:\n", "x-conn: &conn {host: 127.0.0.1, port: 5020}\ndevices:\n")
    text = text.replace("    connection: {host: 127.0.0.1, port: 5020}\n",
                        "    connection: {<<: *conn, port: 5021}\n")
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    # The anchor's home key is unknown to the schema: that, not a duplicate, is the error.
    with pytest.raises(ConfigError, match="x-conn"):
        load_config(path)


def test_a_recursive_anchor_is_refused_not_a_crash(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text("devices: &d\n  - *d\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_config(path)


def _big_config(n: int) -> str:
    blocks = [f"  - id: m{i:03d}\n    type: modbus\n    connection: {{host: 127.0.0.1, port: 502}}\n"
              "    signals:\n      - name: state\n        address: {table: holding, offset: 0}\n"
              "        states: {1: running, 2: idle}\n"
              for i in range(n)]
    return "devices:\n" + "".join(blocks)


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")
def test_configs_are_parsed_once_by_libyaml(tmp_path, monkeypatch):
    """Issue 13: the pure-Python scanner was 88 % of a 1,000-device check, and ran twice."""
    parses = []
    real_init = yaml.CSafeLoader.__init__

    def counting_init(self, stream):
        parses.append(1)
        real_init(self, stream)

    def forbidden(*_a, **_kw):
        raise AssertionError("the pure-Python YAML scanner was used")

    monkeypatch.setattr(yaml.scanner.Scanner, "__init__", forbidden)
    monkeypatch.setattr(yaml.CSafeLoader, "__init__", counting_init)
    path = tmp_path / "gateway.yaml"
    path.write_text(_big_config(50), encoding="utf-8")
    cfg = load_config(path)
    assert len(cfg.devices) == 50 and len(parses) == 1
    bad = _big_config(50).replace("port: 502}", "port: x}", 1)
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 4  # line numbers survive the C parser


@pytest.mark.parametrize("text", [
    "a: &x {b: 1, c: [1, 2.5, .nan, ~, yes, '1', 0x1f]}\nd:\n  <<: *x\n  e: 2\n",
    "t: 2024-01-01\ns: !!set {x, y}\nb: !!binary aGVsbG8=\nk: {1: one, 1.5: x, null: n}\n",
])
def test_data_is_what_safe_load_gives(text):
    assert load_yaml("t.yaml", text).data == yaml.safe_load(text)


@pytest.mark.parametrize("text", ["a: !!int abc\n", "? [1]\n: 2\n", "a: !foo 1\n", "a: [1\n"])
def test_bad_yaml_is_a_config_error_and_the_collector_is_back_on(text):
    assert gc.isenabled()
    with pytest.raises(ConfigError) as info:
        load_yaml("t.yaml", text)
    assert info.value.line is not None
    assert gc.isenabled()


def test_utf16_without_a_bom_is_named(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_bytes(CONFIG.encode("utf-16-le"))
    with pytest.raises(ConfigError, match="byte offset 1: UTF-16 without a byte order mark"):
        load_config(path)
