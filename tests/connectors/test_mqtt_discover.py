"""`shangyun discover mqtt` against a real Mosquitto: topics, counts and payload shapes listed,
Sparkplug recognised (tests/gateway/test_sparkplug_discover.py decodes a Tahu edge node's), unreadable payloads named, and the suggested YAML is a valid config whose
device then really receives its machine's telemetry."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from connectors.mqtt.discover import connection_from_url, discover
from connectors.mqtt.source import MqttSource
from edge.errors import ConfigError
from gateway.cli import main
from gateway.config import load_config
from tests.connectors.test_mqtt_source import Publisher, take

pytestmark = pytest.mark.integration
T = 1_700_000_000
RETAINED = {
    "plant/press-1/telemetry": json.dumps({"ts": T, "data": {"power_kw": 3.5}, "count_total": 7, "state": "running"}),
    "plant/press-2/telemetry": json.dumps([{"ts": T, "count_total": 1}, {"ts": T + 1, "count_total": 2}]),
    "plant/meter/kw": "21.5",
    "plant/oven/kv": "temp=200;state=idle",
    "spBv1.0/G1/NBIRTH/edge-1": b"\x08\x80\xe8\x92\xf7\xbc1\x18\x00",
    "plant/junk": b"\xff\xfe{",
}


@pytest.fixture
def plant(broker):
    pub = Publisher(broker.port)
    for topic, payload in RETAINED.items():
        pub.publish(topic, payload if isinstance(payload, bytes) else payload.encode(), retain=True)
    yield pub
    pub.close()


async def test_discover_lists_shapes_and_writes_a_config_that_works(broker, plant, tmp_path: Path, capsys,
                                                                   monkeypatch) -> None:
    # main() configures process-wide logging (and quiets the protocol libraries): not this
    # test's subject, and it would change what later tests' loggers do.
    monkeypatch.setattr("gateway.cli._setup_logging", lambda level: None)
    out = tmp_path / "devices.yaml"
    rc = await asyncio.to_thread(main, ["discover", "mqtt", f"mqtt://127.0.0.1:{broker.port}", "--seconds", "30",
                                        "--max-messages", str(len(RETAINED)), "-o", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    topics_part, sparkplug_part = table.split("\n\n")    # per topic, then per Sparkplug device
    lines = {line.split()[0]: line for line in topics_part.splitlines()[1:]}
    assert set(lines) == set(RETAINED)
    assert "json object: ts, data.power_kw, count_total, state" in lines["plant/press-1/telemetry"]
    assert "json batch: ts, count_total" in lines["plant/press-2/telemetry"]
    assert "bare value: value" in lines["plant/meter/kw"]
    assert "key=value: temp, state" in lines["plant/oven/kv"]
    assert "sparkplug b NBIRTH" in lines["spBv1.0/G1/NBIRTH/edge-1"]
    assert "G1/edge-1 " in sparkplug_part and "NBIRTH 1" in sparkplug_part
    assert "unreadable" in lines["plant/junk"]

    devices = {d.id: d for d in load_config(out).devices}     # validates as the gateway would
    assert set(devices) == {"plant-press-1-telemetry", "plant-press-2-telemetry", "plant-meter-kw", "plant-oven-kv"}
    press = devices["plant-press-1-telemetry"]
    assert {s.name: s.address.root for s in press.signals} == {
        "power_kw": "data.power_kw", "count_total": "count_total", "state": "state"}
    assert press.connection["timestamp_field"] == "ts"

    src = MqttSource(press)
    try:
        await src.connect()
        plant.publish("plant/press-1/telemetry", {"ts": T + 5, "data": {"power_kw": 4.0}, "count_total": 8,
                                                   "state": "idle"})
        got = await take(src, 6)     # the retained message, then the new one
    finally:
        await src.close()
    assert [(s.signal, s.value) for s in got[3:]] == [("power_kw", 4.0), ("count_total", 8), ("state", "idle")]


async def test_discover_tracks_a_bounded_number_of_topics(broker, plant) -> None:
    conn = connection_from_url(f"mqtt://127.0.0.1:{broker.port}", "#")
    found = await asyncio.to_thread(discover, conn, seconds=30, max_messages=len(RETAINED), max_topics=2)
    assert len(found.topics) == 2 and found.untracked_messages == len(RETAINED) - 2


def test_discover_urls() -> None:
    assert connection_from_url("mqtts://b.plant:9999", "#").model_dump()["port"] == 9999
    tls = connection_from_url("mqtts://b.plant", "#", ca_file="/ca.pem")
    assert tls.tls and tls.port == 8883
    with pytest.raises(ConfigError, match="expected mqtt://HOST"):
        connection_from_url("http://b.plant", "#")
    with pytest.raises(ConfigError, match="not a valid MQTT topic filter"):
        connection_from_url("mqtt://b.plant", "a/#/b")
