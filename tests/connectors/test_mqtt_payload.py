from datetime import datetime, timezone

import pytest

from connectors.mqtt.config import split_path
from connectors.mqtt.payload import decode_message, parse_timestamp
from edge.errors import PayloadError

T = 1_700_000_000  # 2023-11-14T22:13:20Z
T_NS = T * 1_000_000_000


@pytest.mark.parametrize("raw,expected", [
    (T, T_NS),
    (T + 0.25, T_NS + 250_000_000),
    (T * 1000 + 123, T_NS + 123_000_000),                  # epoch milliseconds
    (float(T * 1000) + 0.5, T_NS + 500_000),               # float milliseconds
    (T * 1_000_000 + 7, T_NS + 7_000),                     # microseconds
    (T_NS + 9, T_NS + 9),                                  # nanoseconds
    (str(T), T_NS),
    (f"{T}.5", T_NS + 500_000_000),
    ("2023-11-14T22:13:20Z", T_NS),
    ("2023-11-14T22:13:20.5+00:00", T_NS + 500_000_000),
    ("2023-11-15T06:13:20+08:00", T_NS),                   # China Standard Time
    ("2023-11-14T22:13:20", T_NS),                         # naive: UTC
    ("2023-11-14 22:13:20.123456789Z", T_NS + 123_456_000),  # extra digits truncated
])
def test_timestamp_forms(raw, expected):
    assert parse_timestamp(raw) == expected


def test_millisecond_boundary_is_by_magnitude():
    # 99_999_999_999 s is year 5138: still seconds; 1e11 is read as milliseconds (1973)
    assert parse_timestamp(99_999_999_999) == 99_999_999_999 * 1_000_000_000
    assert parse_timestamp(100_000_000_000) == datetime(1973, 3, 3, 9, 46, 40, tzinfo=timezone.utc).timestamp() * 1e9


@pytest.mark.parametrize("raw", [True, None, [1], "yesterday", "", -5, float("nan"), "inf"])
def test_bad_timestamps(raw):
    with pytest.raises(PayloadError):
        parse_timestamp(raw)


FIELDS = {"state": ("state",), "power_kw": ("data", "power"), "first": ("vals", "0")}


def test_values_by_path_and_payload_time():
    d = decode_message(b'{"ts": 1700000000, "state": "running", "data": {"power": 3.5}, "vals": [7, 8]}',
                       FIELDS, ts_path=("ts",), receive_ns=1)
    assert d.values == {"state": "running", "power_kw": 3.5, "first": 7}
    assert (d.ts_ns, d.ts_from_payload) == (T_NS, True)
    assert d.errors == {}


def test_missing_fields_and_timestamp_fall_back_quietly():
    d = decode_message(b'{"state": 1}', FIELDS, ts_path=("ts",), receive_ns=42)
    assert d.values == {"state": 1}
    assert (d.ts_ns, d.ts_from_payload) == (42, False)
    assert d.errors == {}


def test_bad_field_and_bad_timestamp_do_not_sink_the_message():
    d = decode_message(b'{"ts": "soon", "state": null, "data": {"power": {"x": 1}}, "vals": [true]}',
                       FIELDS, ts_path=("ts",), receive_ns=42)
    assert d.values == {"first": True}
    assert d.ts_ns == 42
    assert set(d.errors) == {"ts", "state", "power_kw"}
    assert "null" in str(d.errors["state"]) and "data.power" in str(d.errors["power_kw"])


@pytest.mark.parametrize("raw,message", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'"text"', "got str"),
])
def test_malformed_messages(raw, message):
    with pytest.raises(PayloadError, match=message):
        decode_message(raw, FIELDS, ts_path=("ts",), receive_ns=0)


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a. b", " "])
def test_bad_paths(path):
    with pytest.raises(ValueError):
        split_path(path)
