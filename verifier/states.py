"""Per-minute machine state as the analyses see it, from a rollup cube."""
from __future__ import annotations

import numpy as np

from edge.model import STATES, State

from .cube import RollupCube

NO_DATA = -1
STATE_INDEX = {s.value: i for i, s in enumerate(STATES)}


def state_seconds(cube: RollupCube) -> np.ndarray:
    """(devices, days, states, minutes) seconds, negatives (never valid) clipped to 0.

    A view of the cube when nothing is negative (the normal case): no copy of a large array."""
    secs = cube.data[:, :, : len(STATES), :]
    return secs if secs.size == 0 or secs.min() >= 0 else np.maximum(secs, 0)


def dominant_state(seconds: np.ndarray) -> np.ndarray:
    """(devices, days, minutes) int8: the state with most seconds in each minute, NO_DATA
    where no state was seen. Ties go to the lower index (running first)."""
    # A running max over the few state planes is much faster than argmax on a strided axis.
    best = seconds[:, :, 0].copy()
    dom = np.zeros(best.shape, dtype=np.int8)
    for s in range(1, seconds.shape[2]):
        plane = seconds[:, :, s]
        more = plane > best
        dom[more] = s
        np.maximum(best, plane, out=best)
    dom[best <= 0] = NO_DATA
    return dom


def state_indexes(names: frozenset[str] | set[str] | tuple[str, ...]) -> list[int]:
    try:
        return sorted(STATE_INDEX[State.parse(n).value] for n in names)
    except ValueError as e:
        raise ValueError(f"bad state in configuration: {e}") from None
