"""edge.store.validate: the quick path for the usual sample decides as the full checks do, on
anything a caller may hand over; and write_samples(checked=True) leaves validation to the
caller (the store sink checks each sample itself to dead-letter what cannot be stored)."""
from __future__ import annotations

import enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edge.store
from edge.model import Quality, Sample
from edge.store import sample_problem

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def original_problem(s: Any) -> str | None:
    """sample_problem before the quick path (commit 9a9240b), the oracle."""
    if not isinstance(s, Sample):
        return f"expected edge.model.Sample, got {type(s).__name__}"
    ts, v = s.ts_ns, s.value
    if not isinstance(ts, int) or isinstance(ts, bool):
        return f"ts_ns must be int nanoseconds, got {type(ts).__name__}"
    if not _I64_MIN <= ts <= _I64_MAX:
        return "ts_ns out of the int64 range"
    if isinstance(v, int):
        if not _I64_MIN <= v <= _I64_MAX:
            return "int value out of the int64 range SQLite can store"
    elif isinstance(v, str):
        if not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return "str value is not valid Unicode (lone surrogate)"
    elif not isinstance(v, float):
        return f"value must be number, bool or str, got {type(v).__name__}"
    if not isinstance(s.device_id, str) or not s.device_id or not isinstance(s.signal, str) or not s.signal:
        return "device_id and signal must be non-empty strings"
    try:
        if s.quality in QUALITIES:
            return None
    except TypeError:
        pass
    return "bad quality"


QUALITIES = frozenset(Quality)


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


ANY = st.one_of(
    st.integers(), st.integers(_I64_MIN - 2, _I64_MIN + 2), st.integers(_I64_MAX - 2, _I64_MAX + 2),
    st.floats(), st.booleans(), st.none(), st.binary(max_size=3), st.text(max_size=4),
    st.sampled_from(["bad \ud800", "", "运行", Name("x"), Name(""), Level.HIGH, 1.5j]),
    st.lists(st.integers(), max_size=2), st.sampled_from(list(Quality)),
    st.sampled_from([0, 1, 2, 3, -1, 0.0, True]),
)


@settings(max_examples=1000, deadline=None)
@given(st.builds(Sample, ANY, ANY, ANY, ANY, ANY) | ANY)
def test_quick_path_decides_as_the_full_checks(s):
    assert sample_problem(s) == original_problem(s)


@settings(max_examples=300, deadline=None)
@given(st.builds(Sample, st.text(min_size=1), st.text(min_size=1), st.integers(_I64_MIN, _I64_MAX),
                 st.one_of(st.floats(), st.integers(_I64_MIN, _I64_MAX), st.text())))
def test_usual_samples(s):
    assert sample_problem(s) == original_problem(s)


def test_checked_batches_skip_validation(store, monkeypatch):
    calls: list[int] = []
    real = edge.store.check_sample
    monkeypatch.setattr(edge.store, "check_sample", lambda i, s: calls.append(i) or real(i, s))
    batch = [Sample("m1", "a", t, float(t)) for t in range(5)]
    store.write_samples(batch)
    assert calls == [0, 1, 2, 3, 4]
    calls.clear()
    store.write_samples([Sample("m1", "a", t, 1.0) for t in range(5, 9)], checked=True)
    assert calls == []
    assert store.sample_count() == 9
    with pytest.raises(ValueError, match="sample 1 "):
        store.write_samples([Sample("m1", "a", 20, 1.0), Sample("m1", "a", 21, 2**64)])
    assert store.sample_count() == 9
