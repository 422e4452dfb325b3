"""Poison samples: values or timestamps SQLite cannot bind are refused on their own, dead-lettered,
and never stop the rest of the batch (or any other device) from being stored."""
from __future__ import annotations

import pytest

from edge.errors import RejectedSinkError
from edge.model import Sample
from edge.pipeline import Pipeline
from edge.store import check_sample, sample_problem
from edge.store_sink import StoreSink

BIG = 123456789012345678901234567890
UINT64 = 2**63 + 5                 # an OPC UA UInt64 above int64
BIG_TS = 99999999999999999999


@pytest.mark.parametrize("sample, words", [
    (Sample("m1", "a", 1, BIG), "int64"),
    (Sample("m1", "a", 1, UINT64), "int64"),
    (Sample("m1", "a", 1, -(2**63) - 1), "int64"),
    (Sample("m1", "a", BIG_TS, 1.0), "ts_ns"),
    (Sample("m1", "a", -(2**63) - 1, 1.0), "ts_ns"),
    (Sample("m1", "a", 1, "bad \ud800 text"), "Unicode"),
])
def test_unbindable_values_are_recognised_up_front(sample, words):
    assert words in (sample_problem(sample) or "")
    with pytest.raises(ValueError, match="sample 3 \\(m1/a\\)"):
        check_sample(3, sample)


def test_int64_limits_themselves_are_storable(store):
    store.write_samples([Sample("m1", "a", 1, 2**63 - 1), Sample("m1", "a", 2, -(2**63)),
                         Sample("m1", "a", 2**63 - 1, 1.0)])
    assert [s.value for s in store.samples("m1")] == [2**63 - 1, -(2**63), 1.0]


async def test_poison_values_are_dead_lettered_and_the_rest_committed(store):
    batch = [Sample(f"m{i % 3}", "a", 1_000 + i, float(i)) for i in range(100)]
    batch[10] = Sample("m1", "count", 5, BIG)
    batch[50] = Sample("opc", "u64", 6, UINT64)
    batch[70] = Sample("m2", "a", BIG_TS, 1.0)
    with pytest.raises(RejectedSinkError, match="3 of 100") as info:
        await StoreSink(store).write(batch)
    assert info.value.rejected_count == 3
    assert store.sample_count() == 97
    letters = {d.device_id: d for d in store.dead_letters()}
    assert letters["m1"].value == repr(BIG) and letters["m1"].ts == "5"
    assert letters["opc"].value == repr(UINT64)
    assert letters["m2"].ts == str(BIG_TS) and "ts_ns" in letters["m2"].reason
    assert store.dead_letter_counts()["m1"] == {"int value out of the int64 range SQLite can store": 1}


async def test_a_row_failing_inside_the_insert_is_isolated_by_splitting(store):
    # A device id SQLite cannot encode is not screened up front: the INSERT itself fails,
    # and only splitting the batch can tell which sample it was.
    batch = [Sample("m1", "a", i, float(i)) for i in range(64)]
    batch[37] = Sample("bad\udc80id", "a", 37, 1.0)
    with pytest.raises(RejectedSinkError, match="1 of 64") as info:
        await StoreSink(store).write(batch)
    assert info.value.rejected_count == 1
    assert store.sample_count() == 63
    [letter] = store.dead_letters()
    assert letter.device_id == "bad\\udc80id" and "UnicodeEncodeError" in letter.reason


async def test_pipeline_stores_every_other_device_despite_poison(store):
    good = [Sample(f"m{i % 5}", "a", 1_000 + i, float(i)) for i in range(2_000)]
    poison = [Sample("opc", "u64", 10 + k, UINT64 + k) for k in range(7)]
    batch = good[:500] + poison[:3] + good[500:] + poison[3:]
    async with Pipeline([StoreSink(store)], batch_size=500, flush_interval_s=0.01) as p:
        await (await p.put_many(batch))
        stats = p.stats()
    assert store.sample_count() == 2_000
    assert (stats.written, stats.rejected, stats.retries) == (2_000, 7, 0)
    assert store.dead_letter_counts() == {"opc": {"int value out of the int64 range SQLite can store": 7}}
