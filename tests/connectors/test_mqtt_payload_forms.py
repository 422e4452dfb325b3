"""Payload forms beyond one JSON object: batches, bare values, key=value text (connectors/mqtt/payload.py).
The property tests are in test_mqtt_payload_property.py."""
from __future__ import annotations

import json

import pytest

from connectors.mqtt.payload import Decoded, Limits, decode_payload
from edge.errors import PayloadError

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


def test_a_batch_longer_than_the_limit_is_refused_whole():
    batch = [{"ts": T + i, "v": i} for i in range(4)]
    assert len(decode(json.dumps(batch).encode(), limits=Limits(max_batch_readings=4))) == 4
    with pytest.raises(PayloadError, match="batch of 5 readings exceeds max_batch_readings 4"):
        decode(json.dumps(batch + [{"ts": T + 9, "v": 9}]).encode(), limits=Limits(max_batch_readings=4))


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
