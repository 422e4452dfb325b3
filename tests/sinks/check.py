"""What the store holds versus what arrived upstream, and polling with a deadline."""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Callable

import numpy as np

from edge.rollup_layout import F
from edge.store import Store

MS = 1_000_000


def stored_samples(store: Store, devices: list[str]) -> Counter:
    """(device, signal, ts_ms) of every stored sample."""
    out: Counter = Counter()
    for d in devices:
        for s in store.samples(d):
            out[(d, s.signal, s.ts_ns // MS)] += 1
    return out


def stored_rollup_minutes(store: Store, devices: list[str]) -> dict[tuple[str, int], float]:
    """(device, minute ts_ms) -> samples in that minute, for every minute with data."""
    out = {}
    for d, day, arr in store.rollup_days(devices):
        day_ms = int((np.datetime64(day) - np.datetime64("1970-01-01")).astype(int)) * 86_400_000
        for m in np.flatnonzero(arr.any(axis=0)):
            out[(d, day_ms + int(m) * 60_000)] = float(arr[F["samples"], m])
    return out


async def until(cond: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(every_s)
