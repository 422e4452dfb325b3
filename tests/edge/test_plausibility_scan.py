"""scan_batch: the supervisor's one pass per batch gives what the two passes gave (the BAD
count, and fix_timestamps' result)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.model import Quality, Sample
from edge.plausibility import BatchScan, MAX_PAST_S, fix_timestamps, scan_batch

from .timebase import DAY0_NS, S_NS

NOW = DAY0_NS
samples = st.builds(
    Sample, st.sampled_from(["m1", "m2"]), st.sampled_from(["a", "b"]),
    st.one_of(st.integers(NOW - 40 * 86_400 * S_NS, NOW + 600 * S_NS), st.integers(0, 2**63 - 1)),
    st.one_of(st.floats(allow_nan=False), st.just("")), st.sampled_from(list(Quality)))


@settings(max_examples=400, deadline=None)
@given(batch=st.lists(samples, max_size=25))
def test_one_pass_equals_the_bad_count_and_fix_timestamps(batch):
    got = scan_batch(batch, NOW)
    assert got.bad == sum(1 for s in batch if s.quality is Quality.BAD)
    assert (got.samples, got.fixed) == fix_timestamps(batch, NOW)
    if not got.fixed:
        assert got.samples is batch         # the common case copies nothing


def test_an_empty_batch_and_a_plausible_one_cost_no_copy():
    assert scan_batch([], NOW) == BatchScan([], 0, 0)
    batch = [Sample("m1", "a", NOW, "", Quality.BAD), Sample("m1", "b", NOW - S_NS, 1.0)]
    assert scan_batch(batch, NOW, MAX_PAST_S) == (batch, 0, 1)
