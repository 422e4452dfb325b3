"""The flat-JSON fast path of DeviceMapping gives what the general payload decoder gives."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.mqtt.config import MqttConnection
from connectors.mqtt.mapping import DeviceMapping
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
    general._flat = None
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
