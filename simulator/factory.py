"""The virtual factory: machines, their protocol servers, and the clock that drives them.

    factory = Factory(make_specs(30), broker=("127.0.0.1", 1883))
    await factory.start()            # every server on a free loopback port
    factory.manifest()               # what listens where (format in ADDRESSES.md)
    await factory.stop_machine("m02"); await factory.start_machine("m02")   # same port
    await factory.stop()
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol, Sequence

from .machine import Machine, MachineSpec
from .modbus_server import DEVICE_ID, ModbusMachineServer
from .mqtt_publisher import TS_FORMATS, MqttMachinePublisher
from .opcua_server import OpcUaMachineServer
from .ports import free_port

log = logging.getLogger(__name__)


class MachineServer(Protocol):
    """What the factory needs from a protocol server (all three modules implement it)."""

    machine: Machine

    @property
    def running(self) -> bool: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def update(self, values: dict, ts: float) -> None: ...


@dataclass
class _Unit:
    machine: Machine
    server: MachineServer
    failing: bool = False  # an update error was logged; log again only after a recovery


class Factory:
    """Runs `specs` as machines, each behind its protocol server, advanced every `tick_s`."""

    def __init__(self, specs: Sequence[MachineSpec], *, broker: tuple[str, int] | None,
                 host: str = "127.0.0.1", tick_s: float = 1.0, start_ts: float | None = None) -> None:
        if tick_s <= 0:
            raise ValueError(f"tick_s must be > 0, got {tick_s}")
        ids = [s.id for s in specs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"machine ids must be unique: {sorted(i for i in ids if ids.count(i) > 1)}")
        if broker is None and any(s.protocol == "mqtt" for s in specs):
            raise ValueError("MQTT machines need a broker: pass broker=(host, port)")
        self.specs = list(specs)
        self.broker = broker
        self.host = host
        self.tick_s = tick_s
        self._start_ts = start_ts
        self._units: dict[str, _Unit] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def machines(self) -> dict[str, Machine]:
        return {mid: u.machine for mid, u in self._units.items()}

    def server(self, machine_id: str) -> MachineServer:
        return self._unit(machine_id).server

    async def start(self) -> None:
        if self._task is not None:
            return
        now = time.time()
        start_ts = self._start_ts if self._start_ts is not None else now
        mqtt_index = 0
        try:
            for spec in self.specs:
                machine = Machine(spec, start_ts)
                machine.advance(max(now, start_ts))
                if spec.protocol == "mqtt":
                    assert self.broker is not None
                    server: MachineServer = MqttMachinePublisher(
                        machine, broker=self.broker, interval_s=self.tick_s,
                        ts_format=TS_FORMATS[mqtt_index % len(TS_FORMATS)])
                    mqtt_index += 1
                    await server.start()
                else:
                    server = await self._start_listening(machine, spec.protocol)
                self._units[spec.id] = _Unit(machine, server)
                await server.update(machine.values(), machine.now)
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._run(), name="shangyun-factory-clock")

    async def _start_listening(self, machine: Machine, protocol: str) -> MachineServer:
        # A free port can be taken between probing and binding: retry with another.
        cls = OpcUaMachineServer if protocol == "opcua" else ModbusMachineServer
        for attempt in range(3):
            server = cls(machine, host=self.host, port=free_port(self.host))
            try:
                await server.start()
                return server
            except OSError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        # In parallel: an asyncua server takes 0.1-0.3 s to wind down its internal tasks.
        results = await asyncio.gather(*(u.server.stop() for u in self._units.values()),
                                       return_exceptions=True)
        for mid, result in zip(self._units, results):
            if isinstance(result, Exception):
                log.warning("machine %s: server did not stop cleanly: %s", mid, result)

    async def stop_machine(self, machine_id: str) -> None:
        """Take the machine off the network (its server goes away; the machine keeps running)."""
        await self._unit(machine_id).server.stop()

    async def start_machine(self, machine_id: str) -> None:
        """Bring the machine back on the network, on the same port as before."""
        unit = self._unit(machine_id)
        await unit.server.start()
        await unit.server.update(unit.machine.values(), unit.machine.now)

    def _unit(self, machine_id: str) -> _Unit:
        try:
            return self._units[machine_id]
        except KeyError:
            known = ", ".join(self._units) or "none (factory not started)"
            raise KeyError(f"no machine {machine_id!r}; known: {known}") from None

    async def tick(self, t: float | None = None) -> None:
        """Advance every machine to `t` (default: now) and push its values to its server."""
        t = time.time() if t is None else t
        for mid, unit in self._units.items():
            unit.machine.advance(max(t, unit.machine.now))
            if not unit.server.running:
                continue
            try:
                await unit.server.update(unit.machine.values(), unit.machine.now)
            except Exception:
                if not unit.failing:
                    log.exception("machine %s: pushing values to its server failed", mid)
                unit.failing = True
            else:
                if unit.failing:
                    log.info("machine %s: server updates work again", mid)
                unit.failing = False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.tick()
            # Schedule on the loop clock so ticks do not drift by the time updates take.
            next_at += self.tick_s
            delay = next_at - loop.time()
            if delay < 0:
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    def manifest(self) -> dict:
        """What runs where, in the format of ADDRESSES.md (plus `ts_format` for MQTT machines)."""
        machines = []
        for spec in self.specs:
            unit = self._units.get(spec.id)
            entry: dict = {
                "id": spec.id, "name": spec.name, "protocol": spec.protocol, "line": spec.line,
                "profile": spec.profile,
            }
            if unit is not None:
                p = unit.machine.profile
                entry.update(vendor=p.vendor, model=p.model, serial=spec.serial,
                             ideal_cycle_s=p.ideal_cycle_s)
                server = unit.server
                if isinstance(server, OpcUaMachineServer):
                    entry["endpoint"] = server.endpoint
                elif isinstance(server, ModbusMachineServer):
                    entry.update(host=server.host, port=server.port, device_id=DEVICE_ID)
                elif isinstance(server, MqttMachinePublisher):
                    entry.update(topic_prefix=server.prefix, ts_format=server.ts_format)
            machines.append(entry)
        broker = {"host": self.broker[0], "port": self.broker[1]} if self.broker else None
        return {"broker": broker, "machines": machines}
