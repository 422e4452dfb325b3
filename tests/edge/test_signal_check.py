"""SignalSpec.check / convert: a raw value that is not a reading of its role is never GOOD."""
from __future__ import annotations

import math

import pytest

from edge.errors import PayloadError
from edge.model import NO_VALUE, Quality, SignalSpec

GOOD, BAD, UNC = Quality.GOOD, Quality.BAD, Quality.UNCERTAIN


@pytest.mark.parametrize("name, raw", [
    ("count_total", "nine"),       # the three cases of issue 7
    ("power_kw", "fast"),
    ("power_kw", True),
    ("count_total", "12"),         # a number as text: the decoder's job, not a reading here
    ("count_good", -1),
    ("count_reject", 3.5),
    ("count_total", math.nan),
    ("count_total", math.inf),
    ("count_total", False),
    ("power_kw", math.nan),
    ("power_kw", -math.inf),
    ("energy_kwh", "12.5"),
    ("energy_kwh", math.inf),
    ("energy_kwh", False),
])
def test_values_that_are_not_readings_of_their_role_are_bad_with_a_reason(name, raw):
    value, quality, problem = SignalSpec(name).check(raw)
    assert quality is BAD and value == NO_VALUE
    assert isinstance(problem, PayloadError) and name in str(problem) and repr(raw) in str(problem)
    assert SignalSpec(name).convert(raw) == (NO_VALUE, BAD)      # convert's callers get BAD too


@pytest.mark.parametrize("name, raw, expected", [
    ("count_total", 12, 12),
    ("count_total", 12.0, 12),     # an integral float from a float register
    ("count_good", 0, 0),
    ("power_kw", 7, 7),
    ("power_kw", -1.5, -1.5),      # a drive feeding back: negative power is a reading
    ("energy_kwh", 1234.5, 1234.5),
])
def test_readings_of_their_role_are_good(name, raw, expected):
    value, quality, problem = SignalSpec(name).check(raw)
    assert (value, quality, problem) == (expected, GOOD, None)
    assert type(value) is type(expected)


def test_counter_is_checked_after_scale_and_offset():
    assert SignalSpec("count_total", scale=0.1).check(120)[:2] == (12, GOOD)   # 12.000000000000002
    assert SignalSpec("count_total", scale=0.5).check(3)[1] is BAD             # 1.5 parts
    assert SignalSpec("count_total", offset=-10).check(3)[1] is BAD            # -7 parts


def test_counter_must_fit_its_register_width_when_known():
    spec = SignalSpec("count_total", width_bits=16)
    assert spec.check(65535)[:2] == (65535, GOOD)
    value, quality, problem = spec.check(65536)
    assert quality is BAD and "16-bit" in str(problem)


def test_state_goes_through_its_map_and_an_unmapped_code_is_uncertain_with_a_reason():
    spec = SignalSpec("state", states={"1": "running"})
    assert spec.check(1.0) == ("running", GOOD, None)
    value, quality, problem = spec.check(7)
    assert (value, quality) == ("7", UNC) and "7" in str(problem)
    assert spec.convert(7) == ("7", UNC)


def test_other_signals_are_kept_as_sent():
    assert SignalSpec("temperature", scale=2.0).check(21.5) == (43.0, GOOD, None)
    assert SignalSpec("alarm").check(True) == (True, GOOD, None)
    assert SignalSpec("mode").check("auto") == ("auto", GOOD, None)
