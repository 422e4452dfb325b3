"""The chunk prefetcher keeps order, bounds read-ahead, and surfaces reader errors."""
from __future__ import annotations

import threading

import pytest

from verifier.prefetch import prefetched


def test_order_and_values_are_kept():
    assert list(prefetched(iter(range(100)))) == list(range(100))


def test_read_ahead_is_bounded():
    produced = []
    gate = threading.Event()

    def source():
        for i in range(10):
            produced.append(i)
            yield i

    it = prefetched(source(), depth=1)
    assert next(it) == 0
    # The producer may hold one item in the queue and one in hand, never all ten.
    gate.wait(0.3)
    assert len(produced) <= 3
    assert list(it) == list(range(1, 10))


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
