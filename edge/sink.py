"""Where batches of samples go. The embedded store is one sink; InfluxDB and upstream MQTT are others.

A sink's `write` either takes the whole batch or raises one of the typed `SinkError`s
(edge.errors): retryable, throttled (with retry-after), or rejected. It never drops silently.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from .model import Sample


@runtime_checkable
class Sink(Protocol):
    name: str

    async def write(self, batch: Sequence[Sample]) -> None:
        """Persist the batch or raise a SinkError."""

    async def close(self) -> None:
        """Flush and release resources."""
