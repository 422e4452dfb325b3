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

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Protocol, runtime_checkable

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


@dataclass(frozen=True)
class DeviceProfile:
    """A known device model a config names with `profile:`: its signals (entries shaped as a
    device block's `signals:`) and the connection settings its block starts from (the block's
    own keys win). `source` says where it is defined, for errors."""

    name: str
    signals: tuple[Mapping[str, Any], ...]
    connection: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""


class Connector(Protocol):
    """What the registry knows about a protocol: its name, how to validate a device's
    `connection` block and signal addresses, how to make a Source, and the device profiles
    it ships (by name)."""

    name: str
    connection_model: type[BaseModel]
    address_model: type[BaseModel] | None

    def make_source(self, device: DeviceSpec) -> Source: ...

    def profile_names(self) -> list[str]: ...

    def profile(self, name: str) -> DeviceProfile | None: ...


SourceFactory = Callable[[DeviceSpec], Source]


EventCallback = Callable[[str, Mapping[str, Any]], None]
"""`(kind, data)`: something noteworthy that is not a sample and not a broken link, e.g.
`payload_error` (a message or register could not be decoded; the source goes on)."""


@runtime_checkable
class ReportsEvents(Protocol):
    """A source that can report events sets them through `on_event` (wired by the supervisor;
    None means nobody listens). Sources call it from the event loop thread only."""

    on_event: EventCallback | None



@runtime_checkable
class ReportsIdentity(Protocol):
    """A source whose device can present its identity after `connect()` returned (an MQTT
    birth message that arrives late, or a rebirth) calls `on_identity` with it (wired by the
    supervisor; None means nobody listens), from the event loop thread."""

    on_identity: Callable[[IdentityEvidence], None] | None

class AckedBatch(list):
    """A batch of Samples whose source must be told once they are durable.

    A source whose protocol can redeliver (MQTT QoS 1/2 with a persistent session) yields
    `AckedBatch(samples, ack)` instead of a plain list. The supervisor hands the samples to the
    pipeline and calls `ack()` (on the event loop) only after every sink has committed or
    dead-lettered them, so a crash before that leaves the messages with the broker, which
    redelivers them. `ack` is never called for samples the pipeline had to drop (stop timeout);
    those are redelivered on the next connection. An empty AckedBatch is legal: it acks
    messages that produced no samples (a malformed payload, already counted as a payload error).
    """

    __slots__ = ("ack",)

    def __init__(self, samples: Iterable[Sample] = (), ack: Callable[[], None] | None = None):
        super().__init__(samples)
        self.ack = ack
