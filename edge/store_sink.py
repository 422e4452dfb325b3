"""The embedded store as a pipeline sink: batches are written in a worker thread.

What goes wrong is sorted the way the pipeline acts on it:
  * a condition of the store, not of the data (busy/locked, disk full, I/O error, a damaged or
    read-only file: edge.sqlite_errors) is RetryableSinkError with a line saying what to do;
    the pipeline keeps the batch and retries it;
  * a sample that cannot be stored (malformed, an int beyond int64...) is refused on its own:
    known problems are found before writing, anything else that makes the write fail is narrowed
    down by splitting the batch until the failing samples are found. The rest of the batch is
    committed, the refused samples are dead-lettered in the store, and RejectedSinkError with
    `rejected_count` tells the pipeline how many were refused. One poison sample never holds up
    the others, and nothing is retried forever.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Sequence

from .errors import RejectedSinkError, RetryableSinkError
from .model import Sample
from .sqlite_errors import condition, describe
from .store import Store, sample_problem


class StoreSink:
    """edge.sink.Sink writing to a `Store`. `close()` does not close the store (its owner does)."""

    name = "store"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def write(self, batch: Sequence[Sample]) -> None:
        await asyncio.to_thread(self._write, batch)

    def _write(self, batch: Sequence[Sample]) -> None:
        problems = [sample_problem(s) for s in batch]
        good: Sequence[Sample] = batch
        refused: list[tuple[Any, str]] = []
        if problems.count(None) != len(problems):    # rare: sort out what cannot be stored
            good = [s for s, p in zip(batch, problems) if p is None]
            refused = [(s, p) for s, p in zip(batch, problems) if p is not None]
        if good:
            self._write_isolating(good, refused)
        if not refused:
            return
        self._guarded(self.store.add_dead_letters, refused, time.time_ns(), waiting=len(batch))
        first, reason = refused[0]
        exc = RejectedSinkError(
            f"store: {len(refused)} of {len(batch)} samples rejected and kept as dead letters; "
            f"first: {_where(first)}: {reason}")
        # The pipeline counts only these as rejected; the rest of the batch is stored.
        exc.rejected_count = len(refused)  # type: ignore[attr-defined]
        raise exc

    def _write_isolating(self, samples: Sequence[Sample], refused: list[tuple[Any, str]]) -> None:
        """Write `samples`; when that fails for a reason that may lie in the data, split them
        until the failing ones are found and add those to `refused`."""
        try:
            # Every sample passed sample_problem in _write: the store need not check them again.
            self._guarded(self.store.write_samples, samples, checked=True, waiting=len(samples))
        except RetryableSinkError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything not a store condition is the data's
            if len(samples) == 1:
                refused.append((samples[0], _reason(exc)))
                return
            mid = len(samples) // 2
            self._write_isolating(samples[:mid], refused)
            self._write_isolating(samples[mid:], refused)

    def _guarded(self, fn: Any, *args: Any, waiting: int, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            cond = condition(exc)
            if cond is not None:
                raise RetryableSinkError(describe(cond, self.store.path, waiting, exc)) from exc
            raise

    async def close(self) -> None:
        return None


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _where(s: Any) -> str:
    if isinstance(s, Sample):
        return f"{s.device_id}/{s.signal} at {s.ts_ns}"
    return type(s).__name__
