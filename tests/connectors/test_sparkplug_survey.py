"""What discovery learns from Sparkplug B messages (connectors/mqtt/sparkplug/survey.py), message by
message: a rebirth replaces a device's aliases, metrics no signal can hold are listed but not
suggested, bounds hold, and no topic or payload makes it raise (it runs in paho's thread, where
an exception would silently end the listening)."""
from __future__ import annotations

import yaml
from hypothesis import given, settings, strategies as st

from connectors.mqtt.config import FieldPath
from connectors.mqtt.sparkplug import codec
from connectors.mqtt.sparkplug.codec import Metric, Payload
from connectors.mqtt.sparkplug.route import suggestion_yaml
from connectors.mqtt.sparkplug.session import Suggestion
from connectors.mqtt.sparkplug.survey import SparkplugSurvey
from edge.model import IdentityEvidence

G, N = "plant1", "gw-7"


def enc(*metrics: Metric, seq: int = 0) -> bytes:
    return codec.encode(Payload(timestamp_ms=1, seq=seq, metrics=list(metrics)))


def test_a_rebirth_replaces_the_aliases_of_its_device_only() -> None:
    s = SparkplugSurvey()
    s.add(f"spBv1.0/{G}/NBIRTH/{N}", enc(Metric(name="bdSeq", datatype=8, value=0)))
    s.add(f"spBv1.0/{G}/DBIRTH/{N}/a", enc(Metric(name="Power", alias=1, datatype=10, value=1.0)))
    s.add(f"spBv1.0/{G}/DBIRTH/{N}/b", enc(Metric(name="Speed", alias=2, datatype=10, value=1.0)))
    s.add(f"spBv1.0/{G}/DBIRTH/{N}/a", enc(Metric(name="Energy", alias=3, datatype=10, value=1.0)))
    s.add(f"spBv1.0/{G}/DDATA/{N}/a", enc(Metric(alias=1, datatype=10, value=2.0),
                                          Metric(alias=3, datatype=10, value=2.0)))
    s.add(f"spBv1.0/{G}/DDATA/{N}/b", enc(Metric(alias=2, datatype=10, value=2.0)))
    a, b = s.devices[(G, N, "a")], s.devices[(G, N, "b")]
    assert a.unresolved_aliases == {1}                 # alias 1 died with a's first birth
    assert a.metrics["Energy"].values == 2 and a.metrics["Power"].values == 1
    assert b.metrics["Speed"].values == 2 and not b.unresolved_aliases
    # Another device's alias is not this device's metric.
    s.add(f"spBv1.0/{G}/DDATA/{N}/a", enc(Metric(alias=2, datatype=10, value=2.0)))
    assert a.unresolved_aliases == {1, 2} and "Speed" not in a.metrics


def test_metrics_no_signal_can_hold_or_name_are_listed_not_suggested() -> None:
    s = SparkplugSurvey()
    s.add(f"spBv1.0/{G}/NBIRTH/{N}", enc(Metric(name="bdSeq", datatype=8, value=0),
                                         Metric(name="Node Control/Rebirth", datatype=11, value=False),
                                         Metric(name="Table", datatype=16, value=None),
                                         Metric(name="Temp ", datatype=10, value=1.0),
                                         Metric(name="a..b", datatype=10, value=1.0),
                                         Metric(name="Uptime", datatype=8, value=5)))
    assert s.devices[(G, N, None)].metrics["Table"].datatype == "DataSet"
    [block] = s.suggested_devices({"host": "h"})
    assert block["signals"] == [{"name": "uptime", "address": "Uptime"}]
    assert "sparkplug" in block["connection"] and block["connection"]["host"] == "h"
    assert "device" not in block["connection"]["sparkplug"]       # the edge node's own metrics
    table = "\n".join(s.table(1.0))
    assert "(not suggested: no reading)" in table and "(not suggested: name not addressable)" in table


def test_bad_topics_and_payloads_are_named_not_raised() -> None:
    s = SparkplugSurvey()
    assert s.add("spBv1.0/G/NOPE/n", b"")[2]
    assert s.add("spBv1.0/STATE/host-1", b'{"online": true}')[0] == "sparkplug b STATE"
    shape, _, problem = s.add(f"spBv1.0/{G}/DDATA/{N}/a", b"\x12\xffnot protobuf")
    assert shape == "sparkplug b DDATA" and problem
    assert s.devices[(G, N, "a")].problem == problem and s.bad_topics == 1


def test_bounded() -> None:
    s = SparkplugSurvey(max_devices=2, max_metrics=3)
    for i in range(5):
        s.add(f"spBv1.0/{G}/DBIRTH/{N}/d{i}",
              enc(*[Metric(name=f"m{j}", alias=j, datatype=10, value=1.0) for j in range(10)]))
    assert len(s.devices) == 2 and s.untracked_messages == 3
    assert all(len(d.metrics) == 3 and d.untracked_metrics == 7 for d in s.devices.values())


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["NBIRTH", "DBIRTH", "NDATA", "DDATA", "NDEATH", "DDEATH", "STATE", "x"]),
       device=st.one_of(st.none(), st.text(max_size=5)), raw=st.binary(max_size=200))
def test_any_message_is_taken_without_raising(kind: str, device: str | None, raw: bytes) -> None:
    s = SparkplugSurvey()
    topic = f"spBv1.0/{G}/{kind}/{N}" + (f"/{device}" if device is not None else "")
    shape, fields, problem = s.add(topic, raw)
    assert shape.startswith("sparkplug b") and isinstance(problem, str)
    s.table(1.0)
    for block in s.suggested_devices({}):
        assert block["signals"]


METRICS = st.builds(Metric, name=st.one_of(st.none(), st.text(max_size=8)),
                    alias=st.one_of(st.none(), st.integers(0, 5)),
                    datatype=st.integers(0, 21), value=st.one_of(st.none(), st.booleans(), st.text(max_size=5)))


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(st.tuples(st.sampled_from(["NBIRTH", "DBIRTH", "NDATA", "DDATA"]),
                                   st.sampled_from(["a", "b"]), st.lists(METRICS, max_size=6)), max_size=8))
def test_any_sequence_of_well_formed_messages_gives_valid_suggestions(messages) -> None:
    s = SparkplugSurvey()
    for kind, device, metrics in messages:
        topic = f"spBv1.0/{G}/{kind}/{N}" + (f"/{device}" if kind.startswith("D") else "")
        s.add(topic, enc(*metrics))
    s.table(1.0)
    for block in s.suggested_devices({}):
        names = [sig["name"] for sig in block["signals"]]
        assert names and len(set(names)) == len(names)
        assert all(FieldPath.model_validate(sig["address"]).root == sig["address"] for sig in block["signals"])


def test_the_gateways_onboarding_suggestion_leaves_out_the_same_metrics() -> None:
    suggestion = Suggestion((G, N, "press-9"), [("Power/kW", "Double"), ("Table", "DataSet"), ("Temp ", "Double"),
                                               ("Power kW", "Float")], IdentityEvidence(protocol="sparkplug"))
    [block] = yaml.safe_load(suggestion_yaml(suggestion))
    assert block["signals"] == [{"name": "power_kw", "address": "Power/kW"},
                                {"name": "power_kw_2", "address": "Power kW"}]
