"""Per-minute machine state as the analyses see it, from a rollup cube."""
from __future__ import annotations

import numpy as np

from edge.model import STATES, State

from .cube import RollupCube

NO_DATA = -1
STATE_INDEX = {s.value: i for i, s in enumerate(STATES)}


def state_seconds(cube: RollupCube) -> np.ndarray:
    """(devices, days, states, minutes) seconds, negatives (never valid) clipped to 0."""
    return np.maximum(cube.data[:, :, : len(STATES), :], 0)


def dominant_state(seconds: np.ndarray) -> np.ndarray:
    """(devices, days, minutes) int8: the state with most seconds in each minute, NO_DATA
    where no state was seen. Ties go to the lower index (running first)."""
    dom = seconds.argmax(axis=2).astype(np.int8)
    dom[seconds.max(axis=2) <= 0] = NO_DATA
    return dom


def state_indexes(names: frozenset[str] | set[str] | tuple[str, ...]) -> list[int]:
    try:
        return sorted(STATE_INDEX[State.parse(n).value] for n in names)
    except ValueError as e:
        raise ValueError(f"bad state in configuration: {e}") from None
