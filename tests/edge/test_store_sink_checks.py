"""StoreSink validates each sample once: it sorts out what cannot be stored itself, then tells
the store (write_samples(checked=True)) not to check the same samples again."""
from __future__ import annotations

from typing import Any

import pytest

import edge.store.validate as validate
import edge.store_sink as store_sink
from edge.errors import RejectedSinkError
from edge.model import Sample
from edge.store_sink import StoreSink


@pytest.fixture
def problem_calls(monkeypatch) -> list[Any]:
    """Every sample_problem call, by the sink or by the store (check_sample)."""
    calls: list[Any] = []
    real = validate.sample_problem

    def counting(s: Any) -> str | None:
        calls.append(s)
        return real(s)
    monkeypatch.setattr(validate, "sample_problem", counting)
    monkeypatch.setattr(store_sink, "sample_problem", counting)
    return calls


async def test_a_batch_is_validated_once_per_sample(store, problem_calls):
    batch = [Sample("m1", "a", i, float(i)) for i in range(10)]
    await StoreSink(store).write(batch)
    assert len(problem_calls) == 10           # was 20: the sink, then the store again
    assert store.sample_count() == 10


async def test_refused_samples_are_still_refused_and_the_rest_stored(store, problem_calls):
    batch = [Sample("m1", "a", 1, 1.0), Sample("m1", "a", 2, 2**70), Sample("m1", "a", 3, 3.0)]
    with pytest.raises(RejectedSinkError, match="1 of 3"):
        await StoreSink(store).write(batch)
    assert len(problem_calls) == 3
    assert [s.ts_ns for s in store.samples("m1")] == [1, 3]


def test_the_store_still_checks_callers_that_did_not(store):
    with pytest.raises(ValueError, match="sample 1"):
        store.write_samples([Sample("m1", "a", 1, 1.0), Sample("m1", "a", 2, 2**70)])
    assert store.sample_count() == 0
    store.write_samples([Sample("m1", "a", 1, 1.0)], checked=True)
    assert store.sample_count() == 1
