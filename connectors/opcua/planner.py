"""Pure subscription planning: monitored items split into CreateMonitoredItems calls no larger
than the server accepts (servers advertise MaxMonitoredItemsPerCall; 500 is safe for most)."""
from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")


def batches(items: Sequence[T], max_per_call: int) -> list[list[T]]:
    if max_per_call < 1:
        raise ValueError(f"max_per_call must be at least 1, got {max_per_call}")
    return [list(items[i:i + max_per_call]) for i in range(0, len(items), max_per_call)]
