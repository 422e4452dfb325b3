import random

import pytest

from connectors.backoff import Backoff


def test_delays_double_within_jitter_and_cap():
    b = Backoff(initial_s=1, max_s=8, rng=random.Random(3))
    delays = [b.next_delay() for _ in range(7)]
    ceilings = [1, 2, 4, 8, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings)), delays
    b.reset()
    assert 0.5 <= b.next_delay() <= 1


def test_jitter_spreads_devices_that_failed_together():
    delays = {round(Backoff(initial_s=1, max_s=60, rng=random.Random(i)).next_delay(), 6) for i in range(20)}
    assert len(delays) > 10


@pytest.mark.parametrize("initial,maximum", [(0, 1), (2, 1), (-1, 5)])
def test_bad_parameters(initial, maximum):
    with pytest.raises(ValueError):
        Backoff(initial_s=initial, max_s=maximum)
