"""The chunk prefetcher keeps order, bounds read-ahead, and surfaces reader errors."""
from __future__ import annotations

import threading
import time

import pytest

from verifier.prefetch import prefetched


def test_order_and_values_are_kept():
    assert list(prefetched(iter(range(100)))) == list(range(100))


@pytest.mark.parametrize("depth", [1, 3])
def test_read_ahead_is_bounded(depth):
    # The source itself checks the bound each time it is asked for an item, so a prefetcher
    # running ahead fails here whenever it happens (no sleep deciding how long to look).
    produced: list[int] = []
    received = [0]

    def source():
        for i in range(20):
            # depth items in the queue and one in hand beyond what the consumer has; +1 for
            # the item the consumer holds but has not counted yet.
            assert i <= received[0] + depth + 1, f"read {i} with {received[0]} consumed"
            produced.append(i)
            yield i

    it = prefetched(source(), depth=depth)
    got = [next(it)]
    received[0] = 1
    deadline = time.monotonic() + 10
    while len(produced) < depth + 2 and time.monotonic() < deadline:   # it reaches the bound
        time.sleep(0.005)
    assert len(produced) == depth + 2
    for item in it:
        got.append(item)
        received[0] += 1
    assert got == list(range(20))


def test_reader_errors_reach_the_consumer():
    def source():
        yield 1
        raise ValueError("disk went away")

    it = prefetched(source())
    assert next(it) == 1
    with pytest.raises(ValueError, match="disk went away"):
        next(it)


def test_consumer_stopping_early_ends_the_reader():
    def source():
        i = 0
        while True:
            yield i
            i += 1

    it = prefetched(source())
    assert next(it) == 0
    it.close()  # generator finalisation sets the stop flag and joins the thread
    assert not any(t.name == "verifier-prefetch" and t.is_alive() for t in threading.enumerate())
