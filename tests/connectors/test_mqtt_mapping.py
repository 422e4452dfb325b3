"""The flat-JSON fast path of DeviceMapping gives what the general payload decoder gives."""
from __future__ import annotations

import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.mqtt.config import MqttConnection
from connectors.mqtt.mapping import DeviceMapping
from edge.model import Quality, SignalSpec
from tests.connectors.devices import device

SIGNALS = [{"name": "state", "address": "state"}, {"name": "count_total", "address": "n"},
           {"name": "power_kw", "address": "p"}, {"name": "label", "address": "label"},
           {"name": "temp", "address": "t", "scale": 0.1}]
RECEIVE_NS = 1_790_000_000_000_000_000

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=300),
                    st.sampled_from(["running", "idle", "fault", "bogus"]))
timestamps = st.one_of(st.integers(min_value=-5, max_value=2**64), st.floats(allow_nan=False),
                       st.sampled_from(["2026-12-01T10:00:00Z", "2026-12-01T10:00:00", "yesterday", ""]), scalars)
docs = st.dictionaries(st.sampled_from(["state", "n", "p", "label", "t", "other", "ts"]), scalars, max_size=7)


def mappings() -> tuple[DeviceMapping, DeviceMapping]:
    spec = device("mqtt", {"host": "h", "topic": "f/{device}/t"}, SIGNALS, device_id="d1")
    cfg = MqttConnection.model_validate(dict(spec.connection))
    fast, general = DeviceMapping(spec, cfg), DeviceMapping(spec, cfg)
    assert fast._flat is not None
    general.disable_fast_path()
    return fast, general


def run(mapping: DeviceMapping, payload: bytes) -> tuple[object, list[tuple[str, str]]]:
    errors: list[tuple[str, str]] = []
    try:
        samples = mapping.samples(payload, RECEIVE_NS, lambda name, err: errors.append((name, str(err))))
    except Exception as err:  # noqa: BLE001 - compared, whatever it is
        return (type(err).__name__, str(err)), errors
    return sorted((s.signal, s.ts_ns, repr(s.value), s.quality.value) for s in samples), sorted(errors)


@settings(max_examples=400, deadline=None)
@given(doc=docs, ts=timestamps)
def test_fast_path_matches_the_general_decoder(doc, ts):
    if "ts" in doc:
        doc["ts"] = ts
    payload = json.dumps(doc).encode()
    fast, general = mappings()
    assert run(fast, payload) == run(general, payload)
    assert fast.time_sources == general.time_sources


@given(raw=st.binary(max_size=200))
def test_fast_path_matches_on_arbitrary_bytes(raw):
    fast, general = mappings()
    assert run(fast, raw) == run(general, raw)


@settings(max_examples=200, deadline=None)
@given(docs=st.lists(docs, min_size=2, max_size=8), spacing=st.sampled_from(["", " ", "\n", "\ufeff"]))
def test_one_mapping_fed_many_payloads_matches_the_general_decoder(docs, spacing):
    """The fast path remembers what `check` made of a text value (a state name): later messages
    must come out as they would from a fresh check. Whitespace or a BOM around the object sends
    it to the general decoder, which must agree too."""
    fast, general = mappings()
    for doc in docs:
        payload = (spacing + json.dumps(doc)).encode()
        assert run(fast, payload) == run(general, payload)
    assert fast.time_sources == general.time_sources


values = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text())


@given(raw=values, name=st.sampled_from(["label", "temp_c", "speed_rpm", "seq", "alarm_text", "alarm",
                                         "reason_code"]))
def test_a_signal_passing_through_has_an_identity_check(raw, name):
    """The fast path stores such a signal's value without `SignalSpec.check`: that is right only
    while `check` is the identity for it (a change to edge/model.py's check shows up here)."""
    signal = SignalSpec(name)
    assert signal.passes_through
    value, quality, problem = signal.check(raw)
    assert (type(value), quality, problem) == (type(raw), Quality.GOOD, None)
    assert value is raw or value == raw


def test_roles_and_scaled_signals_do_not_pass_through():
    judged = ("state", "count_total", "count_good", "count_reject", "power_kw", "energy_kwh")
    assert all(SignalSpec(n).judged for n in judged)
    assert not any(SignalSpec(n).passes_through for n in judged)
    assert not SignalSpec("temp", scale=0.1).passes_through
    assert not SignalSpec("temp", offset=-40.0).passes_through


def test_nested_and_batch_payloads_take_the_general_path():
    fast, general = mappings()
    for payload in (b'{"n": 1, "p": {"x": 1}}', b'[{"ts": 1790000000, "n": 1}, {"ts": 1790000001, "n": 2}]',
                    b"n=3,p=1.5", b"7"):
        assert run(fast, payload) == run(general, payload)


def test_unmatched_signals_are_still_noticed():
    fast, _ = mappings()
    fast._warn_after = 3
    for _ in range(3):
        fast.samples(b'{"n": 1, "p": 2.0}', RECEIVE_NS, lambda *a: None)
    problems = [str(p) for p in fast.unmatched_problems()]
    assert problems == [f"signal {s}: path {a!r} matched nothing in 3 payloads"
                        for s, a in (("label", "label"), ("state", "state"), ("temp", "t"))]


def test_the_fast_path_checks_only_what_needs_checking():
    """Per message, `check` runs for the role signals only, and once per distinct state text:
    a pass-through signal needs none, and a state name's check is remembered."""
    calls: list[str] = []

    class Counted(SignalSpec):
        def check(self, raw):
            calls.append(self.name)
            return super().check(raw)

    spec = device("mqtt", {"host": "h", "topic": "f/{device}/t"}, SIGNALS, device_id="d1")
    spec = dataclasses.replace(spec, signals=tuple(
        Counted(s.name, s.address, s.scale, s.offset, s.states) for s in spec.signals))
    mapping = DeviceMapping(spec, MqttConnection.model_validate(dict(spec.connection)))
    for i in range(10):
        samples = mapping.samples(json.dumps({"state": "running", "n": i, "p": 1.5, "label": "x", "t": 3}).encode(),
                                  RECEIVE_NS, lambda *a: None)
        assert len(samples) == 5
    assert sorted(set(calls)) == ["count_total", "power_kw", "state", "temp"]
    assert calls.count("state") == 1 and calls.count("count_total") == 10
