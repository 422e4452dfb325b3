"""Meters as devices: a device whose signals feed another device's (a power meter on a machine).

In a plant the machine's controller and its meter are separate boxes, often on separate
protocols (an OPC UA or MQTT machine, a Modbus meter on RS-485). The meter is configured as a
device of its own and names the machine it measures:

    - id: meter-07
      type: modbus
      connection: {...}
      signals: [...]                      # or a profile
      feeds: {device: m07, signals: {power_kw: power_kw, energy_kwh: energy_kwh}}

`signals` maps the meter's signal (key) to the machine's signal (value). A multi-channel meter
may feed several machines: `feeds:` is then a list.

The fed samples are stored under the machine's id only, not under the meter's as well: every
analysis (rollups, the verifier's energy, the plant's total) then counts that energy once, on the
machine that drew it; storing both would count it twice in any sum over devices. The meter's
other signals (voltages, currents) stay under its own id, and the meter keeps its own link
state and identity evidence (serial registers) in the registry, checked on every connect.
When the meter goes offline or stalls, the BAD marks of the fed signals go to the machine too,
so the machine's energy is unknown exactly while its meter is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping

from edge.errors import ConfigError
from edge.model import DeviceSpec, Sample

Emit = Callable[[list[Sample]], Awaitable[Any]]


@dataclass(frozen=True)
class Feed:
    """`meter`'s signals feeding `machine`'s: {meter signal: machine signal}."""

    meter: str
    machine: str
    signals: Mapping[str, str]


def check_feeds(feeds: Iterable[Feed], devices: Mapping[str, DeviceSpec],
                where: Callable[[str], tuple[str, int | None]]) -> None:
    """ConfigError for a feed naming an unknown device or signal, feeding itself, or feeding a
    machine signal that something else already provides (the machine itself, or another
    meter): the message names both. `where(meter_id)` is (file, line) of the meter's feed."""
    fed_by: dict[tuple[str, str], str] = {}
    for feed in feeds:
        path, line = where(feed.meter)
        meter = devices[feed.meter]
        if feed.machine == feed.meter:
            raise ConfigError(f"device {feed.meter!r}: feeds itself; `feeds: device:` names the "
                              "machine the meter measures", path=path, line=line)
        machine = devices.get(feed.machine)
        if machine is None:
            known = ", ".join(sorted(d for d in devices if d != feed.meter)) or "none"
            raise ConfigError(f"device {feed.meter!r}: feeds unknown (or disabled) device "
                              f"{feed.machine!r}; devices: {known}", path=path, line=line)
        own = {s.name for s in meter.signals}
        for meter_signal, machine_signal in feed.signals.items():
            if meter_signal not in own:
                raise ConfigError(f"device {feed.meter!r}: feeds {feed.machine}.{machine_signal} "
                                  f"from signal {meter_signal!r}, which it does not have; its "
                                  f"signals: {', '.join(sorted(own))}", path=path, line=line)
            if machine.signal(machine_signal) is not None:
                raise ConfigError(f"signal {feed.machine}.{machine_signal} is fed twice: read by "
                                  f"{feed.machine!r} itself and fed by {feed.meter!r}; drop one",
                                  path=path, line=line)
            first = fed_by.setdefault((feed.machine, machine_signal), f"{feed.meter}.{meter_signal}")
            if first != f"{feed.meter}.{meter_signal}":
                raise ConfigError(f"signal {feed.machine}.{machine_signal} is fed twice: by {first} "
                                  f"and by {feed.meter}.{meter_signal}; drop one",
                                  path=path, line=line)


class Feeder:
    """Routes each meter's fed samples to their machine (the rest pass as they are)."""

    def __init__(self, feeds: Iterable[Feed]):
        self._routes: dict[str, dict[str, tuple[str, str]]] = {}
        for feed in feeds:
            routes = self._routes.setdefault(feed.meter, {})
            for meter_signal, machine_signal in feed.signals.items():
                routes[meter_signal] = (feed.machine, machine_signal)

    def feeds_from(self, device_id: str) -> dict[str, tuple[str, str]]:
        """{meter signal: (machine, machine signal)} of one device; {} for one feeding nothing."""
        return dict(self._routes.get(device_id, {}))

    def emit_for(self, device_id: str, emit: Emit) -> Emit:
        """`emit` for the batches of `device_id`: itself unless the device feeds another."""
        routes = self._routes.get(device_id)
        if not routes:
            return emit

        async def feeding(batch: list[Sample]) -> Any:
            return await emit([_routed(s, routes) for s in batch])
        return feeding


def _routed(s: Sample, routes: Mapping[str, tuple[str, str]]) -> Sample:
    route = routes.get(s.signal)
    if route is None:
        return s
    return s._replace(device_id=route[0], signal=route[1])
