"""Payload forms beyond one JSON object: batches, bare values, key=value text (connectors/mqtt/payload.py),
and a property test that the mapper never raises anything but PayloadError on arbitrary bytes and
never yields a value of a type the store does not hold."""
from __future__ import annotations

import json
import math

import pytest

from connectors.mqtt.payload import Decoded, Limits, decode_payload
from edge.errors import PayloadError
from edge.model import Quality, SignalSpec

FIELDS = {"v": ("v",), "state": ("state",), "power_kw": ("data", "power"), "count_total": ("n",),
          "value": ("value",)}
T = 1_700_000_000


def decode(raw: bytes, fmt: str = "auto", limits: Limits = Limits()) -> list[Decoded]:
    return decode_payload(raw, FIELDS, ts_path=("ts",), receive_ns=42, limits=limits, fmt=fmt)  # type: ignore[arg-type]


def test_a_batch_is_one_reading_per_element_each_at_its_own_time():
    got = decode(json.dumps([{"ts": T, "v": 1}, {"ts": T + 1, "v": 2.5, "data": {"power": 3}}]).encode())
    assert [(d.ts_ns, d.values) for d in got] == [
        (T * 10**9, {"v": 1}), ((T + 1) * 10**9, {"v": 2.5, "power_kw": 3})]
    assert all(d.ts_from_payload for d in got)


def test_a_single_reading_batch_may_use_the_receive_time():
    [d] = decode(b'[{"v": 1}]')
    assert (d.ts_ns, d.ts_from_payload, d.values) == (42, False, {"v": 1})
    assert decode(b"[]") == []


@pytest.mark.parametrize("raw, message", [
    (b'[{"ts": 1700000000, "v": 1}, 7]', "batch element 1 is a int, expected an object"),
    (b'[{"ts": 1700000000, "v": 1}, null]', "batch element 1 is null"),
    (b'[{"ts": 1700000000, "v": 1}, {"v": 2}]', "batch reading 1 has no timestamp"),
    (b'[{"ts": "soon", "v": 1}, {"ts": 1700000000, "v": 2}]', "batch reading 0 has no timestamp"),
    (b"null", "JSON null"),
])
def test_a_bad_batch_is_refused_whole(raw, message):
    with pytest.raises(PayloadError, match=message):
        decode(raw)


@pytest.mark.parametrize("raw, value", [(b"21.5", 21.5), (b" 7\n", 7), (b"true", True), (b'"running"', "running"),
                                        (b"-3e2", -300.0)])
def test_a_bare_value_is_the_field_named_value(raw, value):
    [d] = decode(raw)
    assert d.values == {"value": value} and type(d.values["value"]) is type(value)


def test_number_format_refuses_anything_else():
    assert decode(b"12", fmt="number")[0].values == {"value": 12}
    with pytest.raises(PayloadError, match="not a number"):
        decode(b"true", fmt="number")
    with pytest.raises(PayloadError, match="not a number"):
        decode(b"12 kW", fmt="number")


def test_key_value_text_with_types_paths_and_timestamp():
    [d] = decode(b"ts=1700000000000;v=3, state=running&data.power=4.5\nn=12 flag=TRUE")
    assert d.ts_ns == T * 10**9 and d.ts_from_payload
    assert d.values == {"v": 3, "state": "running", "power_kw": 4.5, "count_total": 12}
    assert type(d.values["v"]) is int


def test_key_value_text_iso_timestamp_and_forced_format():
    [d] = decode(b"ts=2023-11-14T22:13:20Z v=1", fmt="kv")
    assert d.ts_ns == T * 10**9
    with pytest.raises(PayloadError, match="not key=value"):
        decode(b'{"v": 1}', fmt="kv")


@pytest.mark.parametrize("raw, message", [
    (b"v=1,oops", "'oops' is not key=value"),
    (b"v=1,=2", "not key=value"),
    (b"v=1 v=2", "appears twice"),
    (b"\xff=1", "not UTF-8"),
    (b"{garbage", "neither JSON nor key=value text"),
])
def test_malformed_key_value_text(raw, message):
    with pytest.raises(PayloadError, match=message):
        decode(raw)


def test_bad_values_in_key_value_text_are_field_errors():
    [d] = decode(b"v=1e999 n=" + b"9" * 5000 + b" state=" + b"x" * 300)
    assert set(d.errors) == {"v", "count_total", "state"} and d.values == {}


# --- property: arbitrary bytes never crash the mapper or yield a wrong type ---------------------

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
