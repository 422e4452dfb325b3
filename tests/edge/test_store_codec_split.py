"""codec.split, which lets the store convert a write's columns once for all its devices: the
parts it cuts encode to the very bytes a block built per device did before."""
from __future__ import annotations

from itertools import accumulate

import numpy as np

from edge.store import codec

DEVICES = [  # (ts, values, quality, sid) per device, strings in some and not others
    ([1, 2, 3], ["run", 1.5, "idle"], [0, 1, 0], [7, 8, 7]),
    ([1, 2], [3, True], [0, 2], [9, 10]),
    ([5], ["停机"], [0], [11]),
    ([6, 7, 8], [float("nan"), "a", "b"], [2, 0, 0], [12, 13, 13]),
]


def test_split_gives_back_each_devices_block_and_its_bytes():
    whole = codec.from_columns(*(sum((list(d[i]) for d in DEVICES), []) for i in range(4)))
    parts = codec.split(whole, list(accumulate(len(d[0]) for d in DEVICES)))
    assert len(parts) == len(DEVICES)
    for part, device in zip(parts, DEVICES):
        alone = codec.from_columns(*device)
        assert part.strs == alone.strs
        for col in ("ts", "kq", "bits", "sid"):
            assert np.array_equal(getattr(part, col), getattr(alone, col)), col
        assert codec.encode(part) == codec.encode(alone)
    # The whole block is left as it was: the ledger digests it after the parts are encoded.
    assert whole.strs == ["run", "idle", "停机", "a", "b"]
    assert whole.bits[[0, 2, 5, 7, 8]].tolist() == [0, 1, 2, 3, 4]
