"""Modbus source (TCP, RTU over TCP, RTU on a serial port): polls a unit's planned reads every
`poll_interval_s`, through the bus it shares with the other units on the same line (bus.py).

Links: Modbus TCP through mbap.py (several requests in flight, answers matched by transaction
id); RTU framing, on a serial port or over TCP, through pymodbus. This is the only module
importing pymodbus. pymodbus reports failure two ways, exceptions and
responses whose `isError()` is true; `_read` folds both into our errors: a broken or silent
link is a SourceError (the supervisor reconnects), an exception response (illegal address,
device busy) is a PayloadError for the points of that read only.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from typing import Any, AsyncIterator, Hashable

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from connectors.modbus.bus import BUSES, Accept, Bus, BusTimeout, Job, StaleAnswer, bus_key

from connectors.modbus.config import ModbusAddress, ModbusConnection
from connectors.modbus.block import BAD_VALUE, BlockReader, words
from connectors.modbus.decode import decode
from connectors.modbus.mbap import Answer, MbapLink, device_information_pdu, read_pdu
from connectors.modbus.planner import Field, Request, plan
from connectors.reporting import PayloadErrorReporter, ReportsPayloadErrors
from connectors.validation import address_of, connection_of
from edge.errors import ConfigError, PayloadError, SourceError
from edge.model import DeviceSpec, IdentityEvidence, Quality, Sample, Value, now_ns

log = logging.getLogger("shangyun.connectors.modbus")

# pymodbus logs every failed connect and unanswered read; the application quiets it with
# connectors.logs.quiet_libraries (a level set here at import would override that).

# Exception codes meaning "not here": illegal data address (2), and illegal data value (3),
# which some devices answer for a read whose range runs into addresses they lack. Other codes
# (device failure, busy) are transient: the read is retried as planned.
_ADDRESS_REFUSED = frozenset({2, 3})


_FUNCTION_OF = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
_CALL_OF = {"coil": "read_coils", "discrete": "read_discrete_inputs",
            "holding": "read_holding_registers", "input": "read_input_registers"}


@functools.lru_cache(maxsize=1024)
def _acceptor(table: str, count: int) -> Accept:
    """Whether an answer is a read of `table` holding exactly `count` values (bits come padded
    to whole bytes), or an exception response; anything else is another request's answer."""
    function = _FUNCTION_OF[table]
    if table in ("coil", "discrete"):
        size = (count + 7) // 8 * 8
        return lambda rr: rr.isError() or (rr.function_code == function and len(rr.bits) == size)

    def accept(rr: Any) -> bool:
        if type(rr) is Answer:
            return rr.exception_code is not None or (rr.function_code == function and len(rr.data) == 2 * count)
        return rr.isError() or (rr.function_code == function and len(rr.registers) == count)
    return accept


class ExceptionResponse(PayloadError):
    """The device answered a read with a Modbus exception response."""

    def __init__(self, message: str, code: int | None):
        super().__init__(message)
        self.code = code


# 43/14 object ids named by the standard (Modbus application protocol 6.21).
_OBJECT_NAMES = {
    0x00: "VendorName", 0x01: "ProductCode", 0x02: "MajorMinorRevision", 0x03: "VendorUrl",
    0x04: "ProductName", 0x05: "ModelName", 0x06: "UserApplicationName",
}
_READ_CODE_EXTENDED, _READ_CODE_BASIC = 0x03, 0x01


class ModbusSource(ReportsPayloadErrors):
    def __init__(self, device: DeviceSpec):
        self.device = device
        self.config = connection_of(ModbusConnection, device)
        fields = [Field(s.name, address_of(ModbusAddress, device, s)) for s in device.signals]
        self._requests: list[Request] = plan(
            fields, max_gap=self.config.max_gap_registers, max_registers=self.config.max_registers_per_read)
        self._signals = {s.name: s for s in device.signals}
        self._bus: Bus | None = None
        self._send: Any = None     # MbapLink.send when the bus is Modbus TCP (see _submit)
        self._errors = PayloadErrorReporter(log, device.id)
        # Signals whose addresses the device refused: BAD on every poll, not read again until
        # the next connect (a device that refused while booting has its map back after it).
        self._refused: list[Field] = []
        self._reported_refused: set[Hashable] = set()
        self._reprobe = False
        self._readers: dict[int, BlockReader] = {}   # by id() of the planned Request
        self.skipped_polls = 0         # polls not made at their time (see samples())
        self.poll_due_s = 0.0          # monotonic time the latest poll was due
        self.last_lateness_s = 0.0     # how late it joined its bus's queue against that
        self.last_started_s = 0.0      # monotonic time its first request went on the line
        self.stale_answers = 0         # answers discarded as another request's (see _read)

    @property
    def requests(self) -> list[Request]:
        """The planned reads of one poll (for diagnostics and tests)."""
        return list(self._requests)

    @property
    def refused_signals(self) -> list[str]:
        """Signals whose addresses the device refused (exception 2/3): BAD, no longer read."""
        return [str(f.key) for f in self._refused]

    @property
    def poll_interval_s(self) -> float:
        """Polled, so the supervisor marks the time a stalled consumer kept us from polling."""
        return self.config.poll_interval_s

    @property
    def endpoint(self) -> str:
        return f"{self.config.bus_name}/{self.config.device_id}"

    @property
    def bus(self) -> Bus | None:
        """The bus this unit is on while connected (shared with the other units of its line)."""
        return self._bus

    def _make_link(self) -> MbapLink | AsyncModbusTcpClient | AsyncModbusSerialClient:
        c = self.config
        if c.transport == "tcp":
            assert c.host is not None
            return MbapLink(c.host, c.port, connect_timeout_s=c.timeout_s * 2, coalesce=c.max_in_flight > 1)
        # The bus applies each unit's own timeout; pymodbus's must be longer so that it never
        # fires first (and never counts a silent unit against the shared link). reconnect_delay=0:
        # the supervisor owns retrying, pymodbus must not reconnect behind it.
        common: dict[str, Any] = {"timeout": max(60.0, c.timeout_s * 4), "retries": 0, "reconnect_delay": 0}
        if c.transport == "rtu":
            assert c.serial is not None
            try:
                return AsyncModbusSerialClient(c.serial, framer=FramerType.RTU, baudrate=c.baud,
                                               parity=c.parity, stopbits=c.stop_bits, bytesize=8, **common)
            except RuntimeError as err:  # pyserial missing: an installation fault, not a device one
                raise ConfigError(f"device {self.device.id}: transport rtu: {err}") from None
        assert c.host is not None
        return AsyncModbusTcpClient(c.host, port=c.port, framer=FramerType.RTU, **common)

    async def connect(self) -> IdentityEvidence:
        await self.close()
        c = self.config
        self._bus = BUSES.join(bus_key(c.bus_key), c.bus_name, self._make_link, c.pause_s,
                               drain_after_timeout=c.transport != "tcp", max_in_flight=c.max_in_flight)
        try:
            connected = await self._bus.ensure_connected(c.timeout_s * 2)
        except (OSError, asyncio.TimeoutError, ModbusException) as err:
            await self.close()
            raise SourceError(f"{self.endpoint}: cannot connect: {err or type(err).__name__}") from err
        if not connected:
            await self.close()
            raise SourceError(f"{self.endpoint}: cannot connect")
        self._send = self._bus.link.send if isinstance(self._bus.link, MbapLink) else None
        try:
            identity = await self._identity()
        except SourceError:
            await self.close()
            raise
        self._reprobe = bool(self._refused)
        self._readers.clear()   # the reprobe plans new reads
        return identity

    async def samples(self) -> AsyncIterator[list[Sample]]:
        """A batch per poll: the first at once, then on a fixed grid of `poll_interval_s`: the
        due times are whole multiples of the interval on the monotonic clock, the same instants
        for every unit (of every bus) with that interval. Their first requests are therefore
        started in one wake-up of the loop, and their answers come back while the loop is busy
        with the others rather than each waking an idle loop. On this machine a wake-up from
        idle costs more than the Python a poll runs (bench_modbus, 1,000 units on 50 lines, one
        request in flight per line: each unit on a phase of its own 10.5 us per value, 20 phase
        slots of the interval 4.9-5.0, 4 slots 4.4, one grid for all 3.8-4.1). Units queued on
        one line are then served back to back; the wait for the turn is not counted in a
        unit's timeout, and `last_started_s` keeps when the poll's first request went out.
        A poll that cannot be made at its time (the previous one overran: a slow device, a
        long queue on the bus, a blocked consumer) is skipped, not fired late back to back,
        and counted in `skipped_polls`. The wait for the next slot is the bus's (its first
        request starts `at` it), not a sleep of this task."""
        if self._bus is None:
            raise SourceError(f"{self.endpoint}: samples() before connect()")
        interval = self.config.poll_interval_s
        due = time.monotonic()
        slot = 0   # due = slot * interval: the same float for every unit due then
        first = True
        while True:
            self.poll_due_s = due
            yield await self.poll(at=due)
            now = time.monotonic()
            if first:   # onto the grid: the first slot after now
                first = False
                slot = math.ceil(now / interval)
            else:
                slot += 1
                if slot * interval < now:
                    missed = math.floor((now - slot * interval) / interval) + 1
                    self._skipped(missed)
                    slot += missed
            due = slot * interval

    def _skipped(self, missed: int) -> None:
        # Once per source, and at info: the counter (in status) keeps the tally, and a stalled
        # consumer, the other cause, has the supervisor's own warning.
        if not self.skipped_polls:
            log.info("device %s: poll overran its %g s interval; %d poll(s) skipped "
                        "(counted as skipped_polls)", self.device.id, self.config.poll_interval_s, missed)
        self.skipped_polls += missed

    def status_counters(self) -> dict[str, int]:
        """Counts for `shangyun status` and the API (through the supervisor's `counters`)."""
        return {"skipped_polls": self.skipped_polls, "stale_answers": self.stale_answers}

    async def poll(self, at: float | None = None) -> list[Sample]:
        """One round of reads: a sample per signal, BAD where its read or decoding failed.
        `at`: the monotonic time the poll is due; its first read starts then, not before."""
        batch: list[Sample] = []
        learned: list[Request] = []
        planned = list(self._requests)
        if self._reprobe:
            self._reprobe, retry, self._refused = False, self._refused, []
            planned += plan(retry, max_gap=self.config.max_gap_registers,
                            max_registers=self.config.max_registers_per_read)
        if at is not None and not planned:   # every signal refused: nothing to wait on but time
            await asyncio.sleep(at - time.monotonic())
            self.last_lateness_s = time.monotonic() - at
        for req in planned:
            kept, samples = await self._fetch(req, at)
            at = None
            learned.extend(kept)
            batch.extend(samples)
        if learned != self._requests:
            self._readers.clear()
            log.info("device %s: reads planned around refused addresses: %s; refused: %s", self.device.id,
                     ", ".join(f"{r.table} {r.start}+{r.count}" for r in learned) or "none",
                     ", ".join(self.refused_signals) or "none")
            self._requests = learned
        if self._refused:
            ts_ns = now_ns()
            batch.extend(Sample(self.device.id, str(f.key), ts_ns, BAD_VALUE, Quality.BAD)
                         for f in self._refused)
        return batch

    async def _fetch(self, req: Request, at: float | None = None) -> tuple[list[Request], list[Sample]]:
        """The samples of `req`'s fields and the reads that fetched them: `[req]`, unless the
        device refused the block as addresses it lacks. A coalesced read spans the holes
        between signals, so the refusal may concern a hole rather than a signal: the block
        is first cut at those holes, and a part still refused is bisected until each part is
        accepted or is a single signal, which is then refused for good. The caller keeps the
        accepted parts as the plan, so the split is not redone on the next poll."""
        try:
            values, ts_ns = await self._read(req.table, req.start, req.count, at)
        except ExceptionResponse as err:
            if err.code not in _ADDRESS_REFUSED:
                return [req], self._bad(req, err)
            if len(req.fields) == 1:
                self._refuse(req.fields[0], err)  # its BAD sample comes with the other refused
                return [], []
            kept: list[Request] = []
            samples: list[Sample] = []
            for part in self._split(req):
                part_kept, part_samples = await self._fetch(part)
                kept.extend(part_kept)
                samples.extend(part_samples)
            return kept, samples
        except PayloadError as err:
            return [req], self._bad(req, err)
        return [req], self._reader(req).samples(values, ts_ns)

    def _reader(self, req: Request) -> BlockReader:
        """`req`'s BlockReader, made once per planned read (keyed by identity: hashing a
        Request hashes every address)."""
        reader = self._readers.get(id(req))
        if reader is None or reader.request is not req:
            reader = self._readers[id(req)] = BlockReader(self.device.id, req, self._signals, self._errors)
        return reader

    def _split(self, req: Request) -> list[Request]:
        touching = plan(req.fields, max_gap=0, max_registers=self.config.max_registers_per_read)
        return touching if len(touching) > 1 else list(_halves(req))

    def _bad(self, req: Request, err: PayloadError) -> list[Sample]:
        """A read that failed this time (device busy, short answer): its signals are BAD, the
        read stays in the plan."""
        ts_ns = now_ns()
        for f in req.fields:
            self._errors.report(err, signal=f.key, table=req.table, start=req.start, quantity=req.count)
        return [Sample(self.device.id, str(f.key), ts_ns, BAD_VALUE, Quality.BAD) for f in req.fields]

    def _refuse(self, f: Field, err: ExceptionResponse) -> None:
        # Each refused signal is its own configuration fault, so each is named once; it is
        # not asked for again, so it cannot flood.
        self._refused.append(f)
        if f.key not in self._reported_refused:
            self._reported_refused.add(f.key)
            self._errors.report_distinct(err, signal=f.key, table=f.address.table, offset=f.address.offset)

    async def _read(self, table: str, start: int, count: int,
                    at: float | None = None) -> tuple[bytes | list[int], int]:
        """The registers (as the answer's bytes from a Modbus TCP link, a list of words from
        pymodbus; bits as a list of 0/1) and the receive time; SourceError when the link fails,
        PayloadError when the device answers with an exception response. `at`: not before this
        monotonic time (the poll's slot); how late the read joined the bus's queue is kept in
        `last_lateness_s`."""
        bus = self._bus
        if bus is None or not bus.link.connected:
            raise SourceError(f"{self.endpoint}: not connected")
        job = self._submit(bus, table, start, count, at)
        try:
            rr = await job.future
        except StaleAnswer as err:
            # Not this request's answer: a late one to an earlier request of this unit (RTU has
            # no transaction id). The bus holds the line quiet for its own answer.
            self.stale_answers += 1
            raise PayloadError(f"{self.endpoint}: read {table} {start}+{count}: the answer is "
                               f"another request's (function {err.answer.function_code}), "
                               "discarded") from None
        except (OSError, BusTimeout, ModbusException) as err:
            raise SourceError(f"{self.endpoint}: read {table} {start}+{count} failed: "
                              f"{err or type(err).__name__}") from err
        finally:
            if at is not None and job.queued_at:
                self.last_lateness_s = job.queued_at - at
                self.last_started_s = job.deadline - job.timeout_s   # the bus sets the deadline at the start
        ts_ns = now_ns()
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            raise ExceptionResponse(f"{self.endpoint}: read {table} {start}+{count}: "
                                    f"exception code {code if code is not None else '?'}", code)
        if table in ("coil", "discrete"):
            return [int(b) for b in rr.bits[:count]], ts_ns
        if type(rr) is Answer:
            return rr.data, ts_ns
        return list(rr.registers), ts_ns

    def _submit(self, bus: Bus, table: str, start: int, count: int, at: float | None) -> Job:
        unit, timeout_s, accept = self.config.device_id, self.config.timeout_s, _acceptor(table, count)
        if self._send is not None:   # Modbus TCP: the bus starts the request on the link itself
            request = (unit, read_pdu(_FUNCTION_OF[table], start, count), count)
            return bus.submit(self._send, request, timeout_s, accept=accept, at=at)
        call = getattr(bus.link, _CALL_OF[table])
        return bus.submit(bus.start_call, lambda: call(start, count=count, device_id=unit), timeout_s,
                          accept=accept, at=at)

    async def read_value(self, address: ModbusAddress) -> Value:
        """One value read on its own (discovery's probes): SourceError when the unit is silent,
        PayloadError when it answers with an exception or the registers do not decode."""
        regs, _ = await self._read(address.table, address.offset, address.count)
        return decode(list(words(regs)), address)

    async def _identity(self) -> IdentityEvidence:
        objects = await self._device_identification() if self.config.device_identification else {}
        details = {_OBJECT_NAMES.get(k, f"object_{k:#04x}"): v for k, v in sorted(objects.items())}
        serial = ""
        if self.config.serial_object is not None:
            serial = objects.get(self.config.serial_object, "")
        if self.config.serial_registers is not None:
            addr = self.config.serial_registers
            try:
                regs, _ = await self._read(addr.table, addr.offset, addr.count)
                serial = str(decode(list(words(regs)), addr)).strip()
            except PayloadError as err:
                self._errors.report(err, what="serial registers")
            details["serial_registers"] = serial
        return IdentityEvidence(protocol="modbus", endpoint=self.endpoint, serial_number=serial,
                                details=details)

    async def _device_identification(self) -> dict[int, str]:
        """43/14 objects, following `more_follows`; {} when the device does not implement it.
        Extended (private objects) first, then basic, since many devices only know basic."""
        bus = self._bus
        assert bus is not None
        client: Any = bus.link
        for read_code in (_READ_CODE_EXTENDED, _READ_CODE_BASIC):
            objects: dict[int, str] = {}
            object_id = 0
            for _ in range(256):  # bounded: a device repeating next_object_id must not hang us
                try:
                    rr: Any = await self._identification(bus, client, read_code, object_id)
                except (OSError, BusTimeout, ModbusException) as err:
                    raise SourceError(f"{self.endpoint}: device identification failed: "
                                      f"{err or type(err).__name__}") from err
                if rr.isError():
                    break
                for k, v in rr.information.items():
                    objects[int(k)] = _text(v)
                if not rr.more_follows or rr.next_object_id <= object_id:
                    return objects
                object_id = rr.next_object_id
            if objects:
                return objects
        return {}

    def _identification(self, bus: Bus, client: Any, read_code: int, object_id: int) -> Any:
        unit, timeout_s = self.config.device_id, self.config.timeout_s
        if self._send is not None:
            request = (unit, device_information_pdu(read_code, object_id), 0)
            return bus.submit(self._send, request, timeout_s).future
        return bus.transact(lambda: client.read_device_information(
            read_code=read_code, object_id=object_id, device_id=unit), timeout_s)

    async def close(self) -> None:
        self._send = None
        bus, self._bus = self._bus, None
        if bus is not None:
            BUSES.leave(bus)


def _halves(req: Request) -> tuple[Request, Request]:
    """`req`'s fields (address order) split in two, each covered by its own read."""
    middle = len(req.fields) // 2
    return _covering(req.table, req.fields[:middle]), _covering(req.table, req.fields[middle:])


def _covering(table: str, fields: tuple[Field, ...]) -> Request:
    start = min(f.address.offset for f in fields)
    end = max(f.address.offset + f.address.count for f in fields)
    return Request(table, start, end - start, fields)


def _text(raw: Any) -> str:
    if isinstance(raw, list):  # pymodbus gives a list when an object id repeats
        return ",".join(_text(r) for r in raw)
    if isinstance(raw, (bytes, bytearray)):
        return raw.decode("utf-8", errors="replace").strip("\x00 ")
    return str(raw)
