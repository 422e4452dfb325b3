"""SignalSpec.check takes a fast checker chosen once per spec; it must give exactly what the
general check gives (value and its type, quality, problem and its text) on any value."""
from __future__ import annotations

import math
from typing import Any, Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.model import Quality, Role, SignalSpec, State

NAMES = [r.value for r in Role] + ["temperature", "mode"]
STATE_WORDS = [s.value for s in State] + ["RUNNING", " idle ", "Fault", "unknown"]
CODE_KEYS = ["0", "1", "2", "3", "-1", "01", " 1", "1.0", "1_0", "True", "x", "idle", "٣"]

scales = st.one_of(st.sampled_from([1.0, 1, 0.1, 2, -1.5, 0.0, math.nan, math.inf]),
                   st.floats(allow_nan=True, allow_infinity=True))
offsets = st.one_of(st.sampled_from([0.0, 0, -10, 0.5, math.inf]),
                    st.floats(allow_nan=True, allow_infinity=True))
widths = st.one_of(st.none(), st.integers(min_value=-2, max_value=70), st.sampled_from([16, 32, 64]))
state_maps = st.one_of(st.just({}), st.dictionaries(
    st.one_of(st.sampled_from(CODE_KEYS), st.text(max_size=3)),
    st.sampled_from([s.value for s in State]), max_size=6))
specs = st.builds(SignalSpec, name=st.sampled_from(NAMES), scale=scales, offset=offsets,
                  states=state_maps, width_bits=widths)
raws = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**2000), max_value=2**2000),      # beyond any float
    st.sampled_from([0, 1, 2, 3, -1, 2**16 - 1, 2**16, 2**63 - 1, 2**63, 2**64, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 3.0, 12.5, 1e300, 2.0**63, math.nan, math.inf, -math.inf]),
    st.booleans(),
    st.text(max_size=8),
    st.sampled_from(STATE_WORDS + CODE_KEYS),
    st.none(),
    st.just(b"\x01"),
)


def outcome(fn: Callable[[Any], Any], raw: Any) -> tuple[Any, ...]:
    """What `fn(raw)` gives, comparable: NaN equals NaN, the problem compares by type and text,
    and an exception by its type."""
    try:
        value, quality, problem = fn(raw)
    except Exception as exc:  # noqa: BLE001 - both paths must fail the same way
        return ("raised", type(exc))
    return (type(value), repr(value), type(quality), quality,
            type(problem), None if problem is None else str(problem))


@settings(max_examples=3000, deadline=None)
@given(spec=specs, raw=raws)
def test_fast_check_equals_the_general_check(spec: SignalSpec, raw: Any) -> None:
    assert outcome(spec.check, raw) == outcome(spec._check_general, raw)


@settings(max_examples=500, deadline=None)
@given(raw=raws, scale=scales, width=widths)
def test_every_counter_role_agrees(raw: Any, scale: Any, width: Any) -> None:
    for name in ("count_total", "count_good", "count_reject"):
        for s in (scale, 1.0):
            spec = SignalSpec(name, scale=s, width_bits=width)
            assert outcome(spec.check, raw) == outcome(spec._check_general, raw)


def test_the_fast_paths_are_the_ones_taken_for_connector_values() -> None:
    # Not a timing assertion: which checker a spec got (a slip to the general one everywhere
    # would still be correct, and silently slow).
    assert SignalSpec("count_total")._checker.__name__ == "_check_count"
    assert SignalSpec("power_kw", scale=0.1)._checker.__name__ == "_check_scaled_measure"
    assert SignalSpec("state", states={"1": "running"})._checker.__name__ == "_check_mapped_state"
    assert SignalSpec("temperature")._checker.__name__ == "_check_kept"


def test_an_int_beyond_any_float_is_bad_not_an_overflow() -> None:
    for name in ("count_total", "power_kw", "energy_kwh"):
        value, quality, problem = SignalSpec(name).check(10**400)
        assert quality is Quality.BAD and problem is not None and name in str(problem)
    assert SignalSpec("power_kw", scale=0.1).check(10**400)[1] is Quality.BAD


def test_a_spec_is_still_equal_and_printable_by_its_fields() -> None:
    a, b = SignalSpec("count_total", width_bits=16), SignalSpec("count_total", width_bits=16)
    assert a == b and a != SignalSpec("count_total")
    assert "_checker" not in repr(a) and "_prep" not in repr(a)
