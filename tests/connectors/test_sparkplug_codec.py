"""The Sparkplug B decoder: values of every plain kind, and nothing but its own error on any bytes."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from connectors.mqtt.sparkplug import codec, topic, wire
from connectors.mqtt.sparkplug.codec import Metric, Payload
from edge.errors import PayloadError


@pytest.mark.parametrize("datatype, value", [
    (1, -5), (2, -300), (3, -70000), (4, -(2 ** 40)), (5, 200), (6, 65535), (7, 2 ** 32 - 1),
    (8, 2 ** 64 - 1), (10, 3.25), (11, True), (12, "läuft"), (13, 1_764_000_000_000), (14, "t"),
])
def test_each_plain_kind_round_trips(datatype, value):
    raw = codec.encode(Payload(timestamp_ms=1, seq=9, metrics=[Metric(name="m", alias=3, datatype=datatype,
                                                                      value=value)]))
    [m] = codec.decode(raw).metrics
    assert (m.name, m.alias, m.value, type(m.value)) == ("m", 3, value, type(value))


def test_float_and_null_and_unsupported():
    raw = codec.encode(Payload(metrics=[Metric(name="f", datatype=9, value=0.5),
                                        Metric(name="n", datatype=10, value=None)]))
    f, n = codec.decode(raw).metrics
    assert f.value == 0.5 and n.is_null and n.value is None
    dataset = wire.bytes_field(2, wire.bytes_field(1, b"ds") + wire.varint_field(4, 16)
                               + wire.bytes_field(17, b"\x08\x01"))
    [d] = codec.decode(dataset).metrics
    assert d.value is None and d.unsupported == "DataSet"


def test_int8_not_sign_extended_reads_the_same():
    # Tahu's JS sign-extends Int8 -5 to 32 bits; other encoders send 251 in the same field.
    raw = wire.bytes_field(2, wire.varint_field(4, 1) + wire.varint_field(10, 251))
    assert codec.decode(raw).metrics[0].value == -5


@pytest.mark.parametrize("raw, words", [
    (b"\x08", "cut off"),                                    # varint cut off
    (b"\x12\x05ab", "runs past the end"),                    # length beyond the buffer
    (b"\x12\x02\x0a\x01", "runs past the end"),              # metric name cut off
    (b"\x0b", "wire type 3"),                                # a group
    (wire.bytes_field(2, wire.varint_field(4, 12) + wire.varint_field(15, 1)), "wire type 0"),
    (wire.bytes_field(2, wire.bytes_field(1, b"\xff")), "not UTF-8"),
    (wire.bytes_field(2, wire.varint_field(4, 11) + wire.bytes_field(15, b"x")), "str value for datatype Boolean"),
])
def test_malformed_payloads_are_named(raw, words):
    with pytest.raises(PayloadError, match=words):
        codec.decode(raw)


def test_topics():
    assert topic.parse("spBv1.0/g/DDATA/n/d") == topic.Topic("g", "DDATA", "n", "d")
    assert topic.parse("spBv1.0/STATE/host") is None and topic.parse("plant/x") is None
    for bad in ("spBv1.0/g/DDATA/n", "spBv1.0/g/NDATA/n/d", "spBv1.0/g/XBIRTH/n", "spBv1.0/g//n"):
        with pytest.raises(PayloadError):
            topic.parse(bad)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_payload_error(raw):
    try:
        p = codec.decode(raw)
    except PayloadError:
        return
    for m in p.metrics:
        assert m.value is None or isinstance(m.value, (int, float, bool, str))


_metric = st.builds(
    Metric, name=st.one_of(st.none(), st.text(max_size=20)), alias=st.one_of(st.none(), st.integers(0, 2 ** 64 - 1)),
    timestamp_ms=st.one_of(st.none(), st.integers(0, 2 ** 64 - 1)),
    value=st.one_of(st.booleans(), st.integers(-(2 ** 63), 2 ** 63 - 1), st.text(max_size=20),
                    st.floats(allow_nan=False)))


@settings(max_examples=500, deadline=None)
@given(st.lists(_metric, max_size=5), st.integers(0, 255), st.binary(max_size=40), st.integers(0, 40))
def test_well_formed_payloads_decode_and_mutations_stay_contained(metrics, seq, junk, cut):
    raw = codec.encode(Payload(timestamp_ms=5, seq=seq, metrics=metrics))
    back = codec.decode(raw)
    assert back.seq == seq and len(back.metrics) == len(metrics)
    for a, b in zip(metrics, back.metrics):
        assert b.name == a.name and b.alias == a.alias
        assert b.value == a.value or (isinstance(a.value, float) and math.isclose(a.value, b.value))
    for mutated in (raw[:max(0, len(raw) - cut)], raw + junk, junk + raw):
        try:
            codec.decode(mutated)
        except PayloadError:
            pass
