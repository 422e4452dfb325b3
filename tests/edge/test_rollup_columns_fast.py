"""The roll-up's reads without a Python object per value (edge.rollup_job._numbers,
edge.rollup._state_codes) against the per-value code they replaced, on any value kinds."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.rollup import _STATE_CODE, _state_codes, numeric
from edge.rollup_job import _numbers
from edge.store import codec

from . import store_v1
from .test_store_codec_parts import PLAIN, columns


@settings(max_examples=300, deadline=None)
@given(columns(st.one_of(PLAIN, st.sampled_from(["1.5", "nan", "-3", " 7 ", "running"]))))
def test_numbers_are_what_numeric_made_of_the_values(cols):
    block = codec.from_columns(*cols)
    expected = numeric(store_v1.values(block))
    got = _numbers(block)
    assert got.dtype == expected.dtype == np.float64
    assert got.view(np.int64).tolist() == expected.view(np.int64).tolist()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(PLAIN, st.sampled_from(list(_STATE_CODE) + [None, b"running", 3]),
                          st.lists(st.integers(), max_size=1)), max_size=20))
def test_state_codes_are_what_the_per_value_lookup_gave(values):
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    expected = [_STATE_CODE.get(v, -1) if isinstance(v, str) else -1 for v in arr]
    assert _state_codes(arr).tolist() == expected
