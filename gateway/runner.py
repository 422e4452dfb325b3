"""Wiring: config → connectors (one supervisor per device) → pipeline → store, plus the periodic
jobs a long-running gateway needs (minute rollups, raw-sample retention).

The gateway owns no protocol and no storage logic of its own; it only connects the pieces and
keeps their life cycles in order: the store opens first and closes last, the pipeline drains
before the store closes, supervisors stop before the pipeline.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from connectors import registry
from connectors.supervisor import IDENTITY_CHANGED, DeviceSupervisor, stop_all
from edge.model import NS_PER_S, DeviceSpec, IdentityEvidence, Quality, Sample, now_ns
from edge import outbox, sinks
from edge.rejects import Reject, RejectQueue
from edge.forwarder import Forwarder
from edge.pipeline import Pipeline
from edge.store import Store
from edge.store_sink import StoreSink

from .config import GatewaySettings, LoadedConfig
from .evidence import Checkpointer
from .runtime_status import WRITE_EVERY_S, RuntimeStatus

log = logging.getLogger("shangyun.gateway")

SUPERVISOR_RESTART_S = 5.0
# systemd gives a stop 60 s (deploy/shangyun.service): drain for most of it, then give up on a
# sink that stays down, say what was dropped, and still roll up and close in the time left.
DRAIN_TIMEOUT_S = 45.0
# /healthz turns unhealthy when samples wait and nothing was committed for this long.
HEALTH_STALL_S = 30.0


class StoreObserver:
    """Records what supervisors see (online/offline, identity, events) in the store's registry.

    Calls are rare (connects, disconnects, identity checks), so writing synchronously from the
    event loop is cheaper than a thread hop and keeps the order of events. A registry write
    that fails (disk full, database locked) is logged and dropped: it must never stop a
    device's collection, whose samples have their own retrying path through the pipeline.
    """

    def __init__(self, store: Store):
        self.store = store
        self.failures = 0
        # Devices whose last online call had a stored identity to compare with: the store then
        # records any change itself (Store.set_identity), so the supervisor's event is the same
        # change a second time and is not written again.
        self._store_compared: set[str] = set()
        # Payload dead letters wait here and are written in batches (Gateway._report): a device
        # sending garbage as fast as it can must not cost a transaction per message.
        self.rejects = RejectQueue()

    def on_reject(self, reject: Reject) -> None:
        self.rejects.put(reject)

    def write_rejects(self) -> None:
        items, dropped = self.rejects.take()
        self._guard("payload dead letters", "*", lambda: self.store.add_rejects(items, dropped))

    def _guard(self, what: str, device_id: str, write: Callable[[], Any]) -> None:
        try:
            write()
        except Exception as e:  # noqa: BLE001 - see the class docstring
            self.failures += 1
            log.warning("device %s: could not record %s in the store: %s", device_id, what, e)

    def on_online(self, device_id: str, identity: IdentityEvidence, ts_ns: int) -> None:
        def write() -> None:
            self._record_identity(device_id, identity, ts_ns)
            self.store.set_status(device_id, online=True, ts_ns=ts_ns)
            self.store.add_event("online", ts_ns, device_id, {"identity": identity.to_dict()})
        self._guard("online", device_id, write)

    def on_identity(self, device_id: str, identity: IdentityEvidence, ts_ns: int) -> None:
        """Evidence presented after connect (a late MQTT birth message)."""
        self._guard("identity", device_id,
                    lambda: self._record_identity(device_id, identity, ts_ns))

    def _record_identity(self, device_id: str, identity: IdentityEvidence, ts_ns: int) -> None:
        rec = self.store.device(device_id)
        stored = rec.identity if rec is not None else None
        known = stored is not None and bool(stored.fingerprint())
        if known:
            self._store_compared.add(device_id)
        else:
            self._store_compared.discard(device_id)
        # Unknown is not changed: an identity without a fingerprint (no birth message this
        # time) must not replace the evidence on record nor count as a change.
        if identity.fingerprint() or not known:
            self.store.set_identity(device_id, identity, ts_ns)

    def on_offline(self, device_id: str, error: str, ts_ns: int) -> None:
        def write() -> None:
            self.store.set_status(device_id, online=False, ts_ns=ts_ns, error=error)
            self.store.add_event("offline", ts_ns, device_id, {"error": error})
        self._guard("offline", device_id, write)

    def on_event(self, device_id: str, kind: str, data: dict, ts_ns: int) -> None:
        if kind == IDENTITY_CHANGED and device_id in self._store_compared:
            return      # recorded once already, by the store, with the old and new evidence
        self._guard(kind, device_id, lambda: self.store.add_event(kind, ts_ns, device_id, data))


@dataclass
class GatewayStats:
    started_ns: int = field(default_factory=now_ns)
    rollups_written: int = 0
    pruned: int = 0
    supervisor_restarts: int = 0


class Gateway:
    """One running gateway. `await Gateway(config).run(stop_event)`."""

    health_stall_s = HEALTH_STALL_S

    def __init__(self, config: LoadedConfig, *, store: Store | None = None):
        self.config = config
        self.settings: GatewaySettings = config.settings
        self._own_store = store is None
        self.store = store or Store.open(
            config.store_path, retention_days=self.settings.store.retention_days,
            backfill_after_s=self.settings.evidence.backfill_after_s)
        self.pipeline = Pipeline(
            [StoreSink(self.store)],
            queue_size=self.settings.queue_size,
            batch_size=self.settings.batch_size,
            flush_interval_s=self.settings.flush_interval_s,
            on_reject=self._dead_letter,
        )
        self.observer = StoreObserver(self.store)
        self.runtime = RuntimeStatus(self)
        self.forwarders: list[Forwarder] = []
        self.supervisors: dict[str, DeviceSupervisor] = {}
        self.stats = GatewayStats()
        self._tasks: list[asyncio.Task] = []
        self.checkpointer: Checkpointer | None = None
        self._device_tasks: dict[DeviceSupervisor, asyncio.Task] = {}
        self.mqtt: Any = None    # connectors.mqtt.shared.SharedConnections, once a device needs it

    @property
    def devices(self) -> list[DeviceSpec]:
        return self.config.devices

    async def start(self) -> None:
        self.checkpointer = Checkpointer(self.store, self.settings.evidence)
        for spec in self.devices:
            self.store.upsert_device(spec)
        await self.pipeline.start()
        for spec in self.devices:
            source = self._make_source(spec)
            sup = DeviceSupervisor(source, self.pipeline.put_many, self.observer,
                                   max_past_s=self.settings.store.retention_days * 86_400)
            self.supervisors[spec.id] = sup
            self._device_tasks[sup] = asyncio.create_task(self._supervise(spec.id, sup),
                                                          name=f"device:{spec.id}")
        self._tasks.append(asyncio.create_task(self._every(self.settings.rollup_interval_s,
                                                           self._roll_up), name="rollup"))
        self._tasks.append(asyncio.create_task(self._every(self.settings.prune_interval_s,
                                                           self._prune), name="prune"))
        self._tasks.append(asyncio.create_task(self._every(WRITE_EVERY_S, self._report),
                                               name="runtime-status"))
        self._tasks.append(asyncio.create_task(self.checkpointer.run(), name="checkpoint"))
        witness = self.settings.evidence.witness
        if witness is not None:
            from .witness import start_sender

            self._tasks.append(start_sender(self.store, self.checkpointer, witness.url,
                                            key_file=witness.key_file))
        self._start_forwarders()
        self.store.add_event("gateway_started", now_ns(), None,
                             {"config": self.config.path, "devices": len(self.devices)})
        log.info("gateway started: %d devices, store %s", len(self.devices),
                 self.config.store_path)

    async def stop(self) -> None:
        stuck = await stop_all(self._device_tasks)
        if stuck:
            log.error("devices %s did not stop within the timeout; stopping without them", stuck)
        self._device_tasks.clear()
        if self.mqtt is not None:
            await self.mqtt.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for forwarder in self.forwarders:   # what they did not confirm stays in the outbox
            with contextlib.suppress(Exception):
                await forwarder.sink.close()
        self.forwarders.clear()
        await self._mark_stopped()
        self.observer.write_rejects()
        dropped = await self.pipeline.stop(timeout_s=DRAIN_TIMEOUT_S)
        # Everything received is final now (the stop samples closed every state), so roll up
        # through the end of the current minute; a restart within it recomputes that minute.
        minute = 60 * NS_PER_S
        try:
            await asyncio.to_thread(self.store.roll_up, -(-now_ns() // minute) * minute)
            self.store.add_event("gateway_stopped", now_ns(), None,
                                 {**self.summary(), "dropped_at_stop": dropped})
        except Exception as exc:  # noqa: BLE001 - a stop must finish; the next start redoes it
            log.warning("final roll-up / stop record failed (%s); the next start redoes it", exc)
        if self.checkpointer is not None:
            try:    # after the last roll-up: it signs everything this run captured
                await self.checkpointer.checkpoint()
            except Exception as exc:  # noqa: BLE001 - the pending digest waits for the next start
                log.warning("final evidence checkpoint failed (%s); the next one covers it", exc)
        with contextlib.suppress(Exception):   # the last counters, with every link stopped
            self.runtime.write()
        if self._own_store:
            self.store.close()
        log.info("gateway stopped")

    # --- MQTT shared broker connections (connectors/mqtt/shared.py) -------------------------
    def _make_source(self, spec: DeviceSpec) -> Any:
        if spec.protocol == "mqtt":
            from connectors.mqtt.shared import SharedConnections   # paho only when MQTT is used

            if SharedConnections.handles(spec):
                if self.mqtt is None:
                    self.mqtt = SharedConnections(on_event=self._connection_event,
                                                  on_reject=self._route_reject)
                return self.mqtt.source(spec)
        return registry.get(spec.protocol).make_source(spec)

    def _connection_event(self, kind: str, data: dict[str, Any]) -> None:
        """An event of a shared connection about no configured device (`unconfigured_device`)."""
        try:
            self.store.add_event(kind, now_ns(), None, data)
        except Exception as e:  # noqa: BLE001 - as StoreObserver: never stops collection
            log.warning("could not record %s in the store: %s", kind, e)
    def _route_reject(self, reject: Any) -> None:
        """A message a shared connection refused as a whole: a payload dead letter."""
        from connectors.mqtt.rejects import from_route

        self.observer.on_reject(from_route(reject))
    # --- end MQTT shared broker connections ---------------------------------------------------

    async def _mark_stopped(self) -> None:
        """A clean stop ends every device's held state now, as a disconnect would; otherwise
        rollups would keep counting the last state until it goes stale."""
        ts = now_ns()
        for spec in self.devices:
            await self.pipeline.put_many([Sample(spec.id, sig.name, ts, "", Quality.BAD)
                                          for sig in spec.signals])
            self.observer.on_offline(spec.id, "gateway stopped", ts)

    async def run(self, stop: asyncio.Event | None = None, *,
                  on_tick: Callable[["Gateway"], Any] | None = None, tick_s: float = 5.0) -> None:
        """Run until `stop` is set (or forever); `on_tick` is called every `tick_s` for progress."""
        stop = stop or asyncio.Event()
        await self.start()
        try:
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=tick_s)
                if on_tick is not None:
                    on_tick(self)
        finally:
            await self.stop()

    async def _supervise(self, device_id: str, sup: DeviceSupervisor) -> None:
        """Keep a device's supervisor running: it handles every link failure itself, so an
        exception reaching here is a bug; log it with its traceback and start over rather than
        leave the machine dark until someone restarts the gateway."""
        while True:
            try:
                await sup.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.supervisor_restarts += 1
                log.exception("device %s: supervisor failed; restarting it in %.0f s",
                              device_id, SUPERVISOR_RESTART_S)
                await asyncio.sleep(SUPERVISOR_RESTART_S)

    async def _every(self, interval_s: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except Exception:  # a failing job must not end the gateway; it retries next round
                log.exception("periodic job %s failed", getattr(job, "__name__", job))

    async def _roll_up(self, lag_s: float | None = None) -> None:
        lag = self.settings.rollup_lag_s if lag_s is None else lag_s
        until = now_ns() - int(lag * NS_PER_S)
        self.stats.rollups_written += await asyncio.to_thread(self.store.roll_up, until)

    def _start_forwarders(self) -> None:
        """One forwarder per configured sink, draining the outbox (samples are queued in the
        same transaction that stores them). A sink no longer configured gives up its cursor,
        so it does not hold rows back forever."""
        outbox.configure(self.store, max_samples=self.settings.outbox.max_samples)
        configured = {cfg.sink_name for cfg in self.config.sinks}
        for stale in {s.name for s in outbox.stats(self.store)} - configured:
            log.warning("sink %s is no longer configured: its outbox cursor is removed", stale)
            outbox.unregister(self.store, stale)
        for cfg in self.config.sinks:
            forwarder = Forwarder(self.store, sinks.make_sink(cfg), retry_min_s=cfg.retry_min_s,
                                  retry_max_s=cfg.retry_max_s)
            self.forwarders.append(forwarder)
            self._tasks.append(asyncio.create_task(self._forward(forwarder),
                                                   name=f"sink:{cfg.sink_name}"))

    async def _forward(self, forwarder: Forwarder) -> None:
        """A forwarder handles every upstream failure itself; an exception here is a bug: log
        it and start over, the outbox keeps the data meanwhile."""
        while True:
            try:
                await forwarder.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sink %s: forwarder failed; restarting it in %.0f s",
                              forwarder.sink.name, SUPERVISOR_RESTART_S)
                await asyncio.sleep(SUPERVISOR_RESTART_S)

    async def _report(self) -> None:
        """Counters for readers in other processes (gateway.runtime_status), and the summaries
        of payload errors that no new error has triggered yet."""
        for sup in self.supervisors.values():
            flush = getattr(sup.source, "flush_payload_errors", None)
            if flush is not None:
                flush()
        await asyncio.to_thread(self.observer.write_rejects)
        await asyncio.to_thread(self.runtime.write)

    async def _prune(self) -> None:
        self.stats.pruned += await asyncio.to_thread(self.store.prune, now_ns())

    def _dead_letter(self, sink: str, samples: Any, reason: str) -> None:
        """Samples the pipeline had to reject after isolating them (edge.pipeline): kept with
        their value and reason in the store's dead-letter table for the operator to inspect."""
        self.store.add_dead_letters([(s, f"{sink}: {reason}") for s in samples], now_ns())

    def health(self) -> dict[str, Any]:
        """What /healthz reports: `unhealthy` with reasons when data arrives but is not being
        committed (a stuck or failing sink), which a liveness probe alone would miss."""
        p = self.pipeline.stats()
        problems = []
        if p.idle_with_backlog_s > self.health_stall_s:
            problems.append(f"nothing committed for {p.idle_with_backlog_s:.0f} s while "
                            f"{p.received - p.written - p.rejected} samples wait")
        if p.failing_since_s is not None and p.failing_since_s > self.health_stall_s:
            problems.append(f"a sink has been failing for {p.failing_since_s:.0f} s")
        return {"status": "unhealthy" if problems else "ok", "problems": problems,
                "queue_depth": p.queue_depth, "samples_written": p.written,
                "samples_rejected": p.rejected, "samples_dropped": p.dropped}

    def summary(self) -> dict[str, Any]:
        online = sum(1 for s in self.supervisors.values() if _is_online(s))
        p = self.pipeline.stats()
        return {
            "devices": len(self.devices),
            "online": online,
            "samples_received": _get(p, "received"),
            "samples_written": _get(p, "written"),
            "samples_per_s": round(float(_get(p, "samples_per_s")), 1),
            "queue_depth": _get(p, "queue_depth"),
            "uptime_s": round((now_ns() - self.stats.started_ns) / NS_PER_S, 1),
        }


def _is_online(sup: DeviceSupervisor) -> bool:
    state = getattr(sup, "state", "")
    return str(getattr(state, "value", state)) == "online"


def _get(stats: Any, key: str) -> Any:
    if isinstance(stats, dict):
        return stats.get(key, 0)
    return getattr(stats, key, 0)
