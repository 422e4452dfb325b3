from datetime import datetime, timezone

import pytest

from connectors.mqtt.config import split_path
from connectors.mqtt.payload import Limits, decode_message, parse_json, parse_timestamp
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


# --- limits: what one message may cost -------------------------------------------------------

def nested(depth: int) -> bytes:
    """A JSON object `depth` levels deep ({"n": 1} is depth 1)."""
    return b'{"a":' * (depth - 1) + b'{"n": 1}' + b"}" * (depth - 1)


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000, b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_pathological_nesting_is_a_payload_error_not_a_recursion_error(raw):
    with pytest.raises(PayloadError, match="nested deeper than 32"):
        parse_json(raw)


def test_nesting_up_to_the_limit_is_fine_one_more_is_refused():
    assert parse_json(nested(32), Limits(max_depth=32))
    with pytest.raises(PayloadError, match="nested deeper than 32"):
        parse_json(nested(33), Limits(max_depth=32))


def test_brackets_inside_strings_do_not_count_as_depth():
    assert parse_json(b'{"note": "' + b"[{" * 100 + b'"}')["note"] == "[{" * 100


def test_a_number_too_long_to_parse_is_a_payload_error():
    with pytest.raises(PayloadError, match="not JSON"):
        parse_json(b'{"n": ' + b"9" * 5000 + b"}")


def test_limits_per_field_other_fields_still_count():
    fields = {"label": ("label",), "n": ("n",), "big": ("big",)}
    payload = b'{"label": "' + b"x" * 257 + b'", "n": 3, "big": ' + str(2**64).encode() + b"}"
    d = decode_message(payload, fields, ts_path=None, receive_ns=1)
    assert d.values == {"n": 3}
    assert "longer than max_string_chars 256" in str(d.errors["label"])
    assert "x" * 25 not in str(d.errors["label"])  # the log line quotes the start only
    assert "does not fit 64 bits" in str(d.errors["big"])
    assert decode_message(b'{"label": "' + b"x" * 300 + b'"}', fields, ts_path=None, receive_ns=1,
                          limits=Limits(max_string_chars=300)).values == {"label": "x" * 300}


def test_an_unreadable_long_timestamp_is_quoted_short():
    with pytest.raises(PayloadError) as err:
        parse_timestamp("z" * 100_000)
    assert len(str(err.value)) < 200
