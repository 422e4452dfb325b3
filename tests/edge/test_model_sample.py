"""Sample: immutable, hashable, built positionally or by keyword, copied with `_replace`."""
from __future__ import annotations

import pytest

from edge.model import Quality, Sample
from edge.plausibility import fix_timestamps


def test_positional_and_keyword_construction_agree_and_quality_defaults_to_good():
    a = Sample("m1", "power_kw", 5, 1.5)
    b = Sample(device_id="m1", signal="power_kw", ts_ns=5, value=1.5, quality=Quality.GOOD)
    assert a == b and hash(a) == hash(b)
    assert (a.device_id, a.signal, a.ts_ns, a.value, a.quality) == ("m1", "power_kw", 5, 1.5, Quality.GOOD)
    assert Sample("m1", "s", 1, "", Quality.BAD).quality is Quality.BAD


def test_a_sample_cannot_be_changed():
    s = Sample("m1", "a", 1, 2.0)
    with pytest.raises(AttributeError):
        s.value = 3.0  # type: ignore[misc]
    assert len({s, Sample("m1", "a", 1, 2.0)}) == 1


def test_replace_gives_a_sample_with_only_those_fields_changed():
    s = Sample("m1", "a", 1, 2.0, Quality.UNCERTAIN)
    t = s._replace(ts_ns=9)
    assert type(t) is Sample and t == Sample("m1", "a", 9, 2.0, Quality.UNCERTAIN) and s.ts_ns == 1


def test_a_moved_timestamp_keeps_a_sample():
    (fixed,), n = fix_timestamps([Sample("m1", "a", 1000, 2.0)], now_ns=10**18)
    assert n == 1 and type(fixed) is Sample and fixed.quality is Quality.UNCERTAIN
