"""The embedded store as a pipeline sink: batches are written in a worker thread.

sqlite3 errors are sorted the way the pipeline acts on them: a busy/locked database or a full
disk is temporary (RetryableSinkError: the pipeline keeps the batch and retries), anything else
means the batch itself cannot be stored (RejectedSinkError with the device, signal and error).
Samples that are malformed (not a Sample, value of an unsupported type...) are rejected on their
own: the well-formed rest of the batch is still stored.
"""
from __future__ import annotations

import asyncio
import sqlite3
from typing import Sequence

from .errors import RejectedSinkError, RetryableSinkError
from .model import Sample
from .store import Store, check_sample

_TEMPORARY = ("database is locked", "database is busy", "database table is locked",
              "database or disk is full", "disk i/o error")


class StoreSink:
    """edge.sink.Sink writing to a `Store`. `close()` does not close the store (its owner does)."""

    name = "store"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def write(self, batch: Sequence[Sample]) -> None:
        good, bad = _split_valid(batch)
        if good:
            try:
                await asyncio.to_thread(self.store.write_samples, good)
            except sqlite3.Error as exc:
                raise _classify(exc, good) from exc
        if bad:
            exc = RejectedSinkError(f"store: {len(bad)} of {len(batch)} samples rejected; "
                                    f"first: {bad[0]}")
            # The pipeline counts only these as rejected; the rest of the batch is stored.
            exc.rejected_count = len(bad)  # type: ignore[attr-defined]
            raise exc

    async def close(self) -> None:
        return None


def _split_valid(batch: Sequence[Sample]) -> tuple[list[Sample], list[str]]:
    good, bad = [], []
    for i, s in enumerate(batch):
        try:
            check_sample(i, s)
        except ValueError as exc:
            bad.append(str(exc))
        else:
            good.append(s)
    return good, bad


def _classify(exc: sqlite3.Error, batch: Sequence[Sample]) -> Exception:
    text = str(exc).lower()
    first = batch[0]
    context = (f"store: writing {len(batch)} samples (first {first.device_id}/{first.signal} "
               f"at {first.ts_ns}) failed: {exc}")
    if isinstance(exc, sqlite3.OperationalError) and any(t in text for t in _TEMPORARY):
        return RetryableSinkError(context)
    return RejectedSinkError(context)
