"""What every upstream sink implements, and what the forwarder hands it.

A sink's `send` either takes the whole batch (returns once the far side confirmed it: an HTTP 2xx,
an MQTT PUBACK) or raises one of edge.errors' typed SinkErrors:
  * RetryableSinkError: the far side is unreachable or failing (connection refused, 5xx);
  * ThrottledSinkError: it asked us to slow down (429, 503 with Retry-After), `retry_after_s`;
  * RejectedSinkError: it refused the data (400, 413, 422); sending it again will not help.
    The forwarder then splits the batch to find the refused points and dead-letters those alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, runtime_checkable

from ..outbox import Item


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """The device registry's facts a sink turns into tags."""

    line: str = ""
    protocol: str = ""


@dataclass(frozen=True, slots=True)
class Batch:
    items: Sequence[Item]
    devices: Mapping[str, DeviceInfo] = field(default_factory=dict)

    def device(self, device_id: str) -> DeviceInfo:
        return self.devices.get(device_id) or DeviceInfo()


@runtime_checkable
class Sink(Protocol):
    name: str
    max_batch: int           # points per send

    @property
    def connected(self) -> bool:
        """Whether the last exchange with the far side worked."""

    async def send(self, batch: Batch) -> None:
        """Deliver the batch or raise a SinkError (see the module doc)."""

    async def close(self) -> None:
        """Release connections."""

