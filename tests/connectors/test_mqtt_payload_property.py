"""Property tests (hypothesis): the MQTT payload mapper never raises anything but PayloadError on
arbitrary bytes, JSON documents or key=value text, and never yields a value of a type the store
does not hold, nor one that passes its role's check as GOOD while being the wrong kind."""
from __future__ import annotations

import json
import math

import pytest

from connectors.mqtt.payload import Limits, decode_payload
from edge.errors import PayloadError
from edge.model import Quality, SignalSpec
from tests.connectors.test_mqtt_payload_forms import FIELDS

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the test extra (make setup-test)")
st = hypothesis.strategies
LIMITS = Limits(max_depth=8, max_string_chars=64)
ROLES = {"state": SignalSpec("state"), "power_kw": SignalSpec("power_kw"), "count_total": SignalSpec("count_total"),
         "v": SignalSpec("v"), "value": SignalSpec("value")}


def _check_readings(raw: bytes, fmt: str) -> None:
    try:
        readings = decode_payload(raw, FIELDS, ts_path=("ts",), receive_ns=42, limits=LIMITS, fmt=fmt)  # type: ignore[arg-type]
    except PayloadError:
        return
    for d in readings:
        assert type(d.ts_ns) is int and d.ts_ns >= 0
        assert set(d.values) <= set(FIELDS) and set(d.errors) <= set(FIELDS) | {"ts"}
        assert all(isinstance(e, PayloadError) for e in d.errors.values())
        for name, v in d.values.items():
            assert type(v) in (bool, int, float, str)
            if type(v) is int:
                assert -(2**63) <= v < 2**63
            if type(v) is float:
                assert math.isfinite(v)
            if type(v) is str:
                assert len(v) <= LIMITS.max_string_chars
            value, quality, _ = ROLES[name].check(v)
            if quality is Quality.GOOD and name in ("power_kw", "count_total"):
                assert type(value) in (int, float) and math.isfinite(value)
            if quality is Quality.GOOD and name == "count_total":
                assert value >= 0 and value == int(value)


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80)
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.sampled_from(["ts", "v", "state", "data", "power", "n", "value", "x"])
                                       | st.text(max_size=5), inner, max_size=5), max_leaves=30)
_kv = st.lists(st.tuples(st.sampled_from(["ts", "v", "state", "data.power", "n", ""]),
                         st.text(alphabet="0123456789.eE+-truefalsTRUEnax=", max_size=12)), max_size=6)


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(raw=st.binary(max_size=300), fmt=st.sampled_from(["auto", "json", "kv", "number"]))
def test_arbitrary_bytes_never_raise_nor_yield_a_wrong_type(raw: bytes, fmt: str) -> None:
    _check_readings(raw, fmt)


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(doc=_json)
def test_arbitrary_json_documents_never_raise_nor_yield_a_wrong_type(doc: object) -> None:
    _check_readings(json.dumps(doc).encode(), "auto")


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(pairs=_kv, sep=st.sampled_from([",", ";", " ", "&", "\n"]))
def test_arbitrary_key_value_text_never_raises_nor_yields_a_wrong_type(pairs: list[tuple[str, str]], sep: str) -> None:
    _check_readings(sep.join(f"{k}={v}" for k, v in pairs).encode(), "auto")
