"""The one small interface every southbound protocol implements.

A `Source` is one connection to one device. The supervisor (connectors.supervisor) owns its life:

    identity = await source.connect()      # raises SourceError when unreachable
    async for batch in source.samples():   # yields lists of Samples until the link breaks
        ...                                # (then raises SourceError) or close() is called
    await source.close()                   # idempotent; safe after a failed connect

`connect()` returns the identity evidence the device presents (OPC UA application URI and
certificate, Modbus 43/14 objects and serial registers, MQTT birth message). A source never
knows about stores or pipelines; it only turns its device's protocol into Samples.

Optional capabilities are separate protocols, checked where used (`Discoverer`,
`ReportsEvents`).
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Callable, Mapping, Protocol, runtime_checkable

from pydantic import BaseModel

from edge.model import DeviceSpec, IdentityEvidence, Sample


@runtime_checkable
class Source(Protocol):
    device: DeviceSpec

    async def connect(self) -> IdentityEvidence: ...

    def samples(self) -> AsyncIterator[list[Sample]]: ...

    async def close(self) -> None: ...


@runtime_checkable
class Discoverer(Protocol):
    async def discover(self, target: str, *, timeout_s: float = 3.0) -> list[Mapping[str, Any]]:
        """Probe `target` (host, host range or broker) and describe the devices found."""


class Connector(Protocol):
    """What the registry knows about a protocol: its name, how to validate a device's
    `connection` block and signal addresses, and how to make a Source."""

    name: str
    connection_model: type[BaseModel]
    address_model: type[BaseModel] | None

    def make_source(self, device: DeviceSpec) -> Source: ...


SourceFactory = Callable[[DeviceSpec], Source]


EventCallback = Callable[[str, Mapping[str, Any]], None]
"""`(kind, data)`: something noteworthy that is not a sample and not a broken link, e.g.
`payload_error` (a message or register could not be decoded; the source goes on)."""


@runtime_checkable
class ReportsEvents(Protocol):
    """A source that can report events sets them through `on_event` (wired by the supervisor;
    None means nobody listens). Sources call it from the event loop thread only."""

    on_event: EventCallback | None
