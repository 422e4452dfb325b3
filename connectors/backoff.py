"""Exponential backoff with full jitter, so many devices that dropped together (a switch
rebooted) do not all knock again in the same instant."""
from __future__ import annotations

import random


class Backoff:
    def __init__(self, *, initial_s: float = 1.0, max_s: float = 60.0, rng: random.Random | None = None):
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got {initial_s}, {max_s}")
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        """The wait before the next attempt: uniform in [ceiling/2, ceiling], ceiling doubling
        from `initial_s` up to `max_s`. Half the ceiling is kept so a retry never comes
        immediately (full jitter down to zero would hammer a device that just refused)."""
        ceiling = min(self.max_s, self.initial_s * (2 ** self._attempt))
        if ceiling < self.max_s:
            self._attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0
