from pathlib import Path

import pytest
import yaml

import connectors
from connectors import registry
from connectors.base import Source
from edge.errors import ConfigError
from edge.model import DeviceSpec, SignalSpec
from tests.connectors.devices import device

PACKAGE = Path(connectors.__file__).parent


def test_names_and_unknown_name():
    assert registry.names() == ["modbus", "mqtt", "opcua"]
    with pytest.raises(ConfigError, match="unknown connector type 'bacnet'; valid: modbus, mqtt, opcua"):
        registry.get("bacnet")


@pytest.mark.parametrize("name", ["modbus", "mqtt", "opcua"])
def test_sample_yaml_validates_and_makes_a_source(name):
    (block,) = yaml.safe_load((PACKAGE / name / "sample.yaml").read_text())
    assert block["type"] == name
    src = registry.make_source(device(name, block["connection"], block["signals"], device_id=block["id"]))
    assert isinstance(src, Source)
    assert [s.name for s in src.device.signals][0] == "state"


def test_source_revalidates_a_raw_connection_dict():
    # A DeviceSpec from elsewhere (the registry store): plain dicts, one of them wrong.
    bad = DeviceSpec(id="p9", name="p9", protocol="modbus", connection={"host": "h", "port": 70000},
                     signals=(SignalSpec("state", address={"table": "holding", "offset": 0}),))
    with pytest.raises(ConfigError, match=r"device p9: connection: port: .*less than or equal to 65535"):
        registry.make_source(bad)
    bad_addr = DeviceSpec(id="p9", name="p9", protocol="opcua", connection={"endpoint": "opc.tcp://h:1"},
                          signals=(SignalSpec("state", address="State"),))
    with pytest.raises(ConfigError, match="device p9: signal state: address: .*not a node id"):
        registry.make_source(bad_addr)


def test_protocol_mismatch_is_refused():
    dev = device("mqtt", {"host": "h", "topic": "t"}, [{"name": "state", "address": "state"}])
    with pytest.raises(ConfigError, match="given to the modbus connector"):
        registry.get("modbus").make_source(dev)


@pytest.mark.parametrize("name,connection,message", [
    ("opcua", {"endpoint": "http://x"}, "String should match pattern"),
    ("opcua", {"endpoint": "opc.tcp://x", "security_policy": "Basic256Sha256", "security_mode": "Sign",
               "certificate_path": "c.der"}, "certificate_path and private_key_path go together"),
    ("opcua", {"endpoint": "opc.tcp://x", "username": "op"}, "username needs a password"),
    ("opcua", {"endpoint": "opc.tcp://x", "username": "op", "password": "a", "password_env": "B"},
     "one way"),
    ("opcua", {"endpoint": "opc.tcp://x", "security_policy": "Basic256Sha256"}, "both be None or both be set"),
    ("mqtt", {"host": "h", "topic": "t", "qos": 3}, "less than or equal to 2"),
    ("mqtt", {"host": "h"}, "topic"),
    ("modbus", {"host": "h", "poll_interval_s": 0}, "greater than 0"),
    ("modbus", {"host": "h", "typo": 1}, "Extra inputs are not permitted"),
])
def test_connection_validation(name, connection, message):
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match=message):
        registry.get(name).connection_model.model_validate(connection)


@pytest.mark.parametrize("text,index,uri", [
    ("ns=3;s=m1.State", 3, None),
    ("nsu=urn:shangyun:sim;s=m1.State", None, "urn:shangyun:sim"),
    ("i=2258", 0, None),
    ("ns=2;s=a;b", 2, None),   # ';' inside a string identifier
])
def test_node_addresses(text, index, uri):
    parsed = registry.get("opcua").address_model.model_validate(text).parsed
    assert (parsed.namespace_index, parsed.namespace_uri) == (index, uri)
