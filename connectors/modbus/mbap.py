"""A lean Modbus TCP (MBAP) client link: the reads the source makes (functions 1-4 and 43/14),
several requests in flight on one connection, matched to their answers by transaction id.

Why not pymodbus's client here: it takes one lock per client around every request, so the unit
ids behind one endpoint could never have more than one request in flight, and it costs a future,
a timer and a framer pass per request on top of ours. The bus (bus.py) starts each request
with `send(job)` and times it out; this link keeps a dict of pending transaction ids and
resolves each job from the answer, in the callback that received it. Requests made in the
same event-loop iteration (the units of an endpoint are due at the same instant, see
ModbusSource.samples) leave in ONE socket write, and answers that arrive together are parsed
in one pass, from a receive buffer of its own. An answer whose transaction id is not pending
(the late answer to a request that timed out) is discarded and counted in `stale_answers`.

The object answers with the few attributes of pymodbus's responses the source reads
(`isError()`, `function_code`, `registers`, `bits`, `exception_code`, and for 43/14
`information`, `more_follows`, `next_object_id`), so the source treats both links alike.
RTU framing (serial lines, RTU over TCP) stays with pymodbus, where one request at a time is
what the line allows anyway.
"""
from __future__ import annotations

import asyncio
import struct
from types import MappingProxyType
from typing import Mapping, Sequence

from connectors.modbus.bus import Job

_MBAP = struct.Struct(">HHHB")       # transaction id, protocol id (0), length, unit id
_READ = struct.Struct(">BHH")        # function, start, count
_MAX_TID = 0xFFFF
_MAX_FRAME = 260                     # MBAP header + the largest PDU (253 bytes)
_BUFFER = 8192                       # receive buffer: 31 whole answers, and any partial one
_NO_OBJECTS: Mapping[int, bytes] = MappingProxyType({})


class Answer:
    """One response, shaped as the source reads pymodbus's (a plain class: made per answer, its
    defaults shared rather than built each time)."""

    __slots__ = ("function_code", "data", "bits", "exception_code", "information", "more_follows",
                 "next_object_id")

    def __init__(self, function_code: int, *, data: bytes = b"", bits: Sequence[bool] = (),
                 exception_code: int | None = None, information: Mapping[int, bytes] = _NO_OBJECTS,
                 more_follows: bool = False, next_object_id: int = 0):
        self.function_code = function_code
        self.data = data              # a register read's words, big-endian, 2 bytes each
        self.bits = bits
        self.exception_code = exception_code
        self.information = information
        self.more_follows = more_follows
        self.next_object_id = next_object_id

    def isError(self) -> bool:  # noqa: N802 - the name pymodbus's responses use
        return self.exception_code is not None

    @property
    def registers(self) -> list[int]:
        return list(struct.unpack(f">{len(self.data) // 2}H", self.data))


class MbapLink(asyncio.BufferedProtocol):
    """One Modbus TCP connection shared by every unit id behind host:port."""

    def __init__(self, host: str, port: int, *, connect_timeout_s: float, coalesce: bool = True):
        self.host, self.port = host, port
        # Several requests in flight: those started in one loop iteration leave in one write.
        # One at a time (max_in_flight 1): each is written at once, without a callback's wait.
        self.coalesce = coalesce
        self.connect_timeout_s = connect_timeout_s
        self.stale_answers = 0
        self.most_in_flight = 0   # the most requests that were waiting for answers at once
        self.writes = 0           # socket writes made (several requests may share one)
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, Job] = {}   # by transaction id
        self._next_tid = 0
        # Answers are received into this buffer (BufferedProtocol): a plain Protocol's transport
        # allocates a 256 KiB bytes object per read (mmap, page faults, mremap, munmap: three
        # system calls per answer on top of the recv, measured in bench_modbus).
        self._buffer = bytearray(_BUFFER)
        self._view = memoryview(self._buffer)
        self._filled = 0
        self._out: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def connect(self) -> bool:
        self._loop = asyncio.get_running_loop()
        await asyncio.wait_for(
            self._loop.create_connection(lambda: self, self.host, self.port), self.connect_timeout_s)
        return self.connected

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._lost(ConnectionError("link closed"))

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._filled = 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc or ConnectionError("connection closed by the device"))

    def get_buffer(self, sizehint: int) -> memoryview:
        # A partial frame left at the front is shorter than _MAX_FRAME: room always remains.
        return self._view[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        buf = self._buffer
        filled = self._filled + nbytes
        used = 0
        while filled - used >= 7:
            tid, _, length, _ = _MBAP.unpack_from(buf, used)
            end = used + 6 + length
            if length < 2 or end - used > _MAX_FRAME:
                # Not MBAP framing: nothing after this can be trusted; the source reconnects.
                self._filled = 0
                self._lost(ConnectionError(f"invalid Modbus TCP frame (length {length})"))
                if self._transport is not None:
                    self._transport.close()
                return
            if end > filled:
                break
            self._answer(tid, bytes(buf[used + 7:end]))
            used = end
        if used == filled:
            self._filled = 0
        else:
            rest = filled - used
            if used:
                buf[:rest] = buf[used:filled]
            self._filled = rest

    # requests (started by the bus: Bus.submit(link.send, (unit, pdu, count), ...))

    def send(self, job: Job) -> None:
        """Send `job.request` = (unit, pdu, count of values asked for); the answer resolves the
        job from `buffer_updated`."""
        if not self.connected:
            raise ConnectionError("not connected")
        unit, pdu, _ = job.request
        tid = self._next_tid = self._next_tid % _MAX_TID + 1
        self._pending[tid] = job
        job.token, job.owner = tid, self
        if len(self._pending) > self.most_in_flight:
            self.most_in_flight = len(self._pending)
        frame = _MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu
        if not self.coalesce:
            assert self._transport is not None
            self.writes += 1
            self._transport.write(frame)
            return
        if not self._out:
            # Requests started in this loop iteration (units due at the same instant) leave
            # in one write.
            (self._loop or asyncio.get_running_loop()).call_soon(self._flush)
        self._out.append(frame)

    def forget(self, job: Job) -> None:
        """The job timed out: its answer, if it still comes, is stale."""
        if self._pending.get(job.token) is job:
            del self._pending[job.token]

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self._transport is not None and not self._transport.is_closing():
            self.writes += 1
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    # answers

    def _answer(self, tid: int, pdu: bytes) -> None:
        job = self._pending.pop(tid, None)
        if job is None:
            self.stale_answers += 1
            return
        try:
            answer = _parse(pdu, job.request[2])
        except (ValueError, IndexError, struct.error) as err:
            job.fail(ConnectionError(f"malformed answer: {err}"))
            return
        job.resolve(answer)

    def _lost(self, exc: Exception) -> None:
        self._transport = None
        pending, self._pending = self._pending, {}
        self._out.clear()
        for job in pending.values():
            job.fail(ConnectionError(str(exc)))


def read_pdu(function: int, start: int, count: int) -> bytes:
    """The PDU of a read (functions 1-4)."""
    return _READ.pack(function, start, count)


def device_information_pdu(read_code: int, object_id: int) -> bytes:
    """The PDU of Read Device Identification (43/14)."""
    return bytes((0x2B, 0x0E, read_code, object_id))


def _parse(pdu: bytes, count: int) -> Answer:
    function = pdu[0]
    if function & 0x80:
        return Answer(function & 0x7F, exception_code=pdu[1])
    if function in (3, 4):
        size = pdu[1] // 2 * 2
        if len(pdu) < 2 + size:
            raise ValueError(f"{len(pdu) - 2} bytes of registers where the answer says {pdu[1]}")
        return Answer(function, data=pdu[2:2 + size])
    if function in (1, 2):
        data = pdu[2:2 + pdu[1]]
        return Answer(function, bits=[bool(byte >> i & 1) for byte in data for i in range(8)])
    if function == 0x2B:
        # MEI type 14, read code, conformity, more follows, next object id, number of objects
        more, next_id, n = pdu[4], pdu[5], pdu[6]
        info: dict[int, bytes] = {}
        at = 7
        for _ in range(n):
            obj, length = pdu[at], pdu[at + 1]
            info[obj] = pdu[at + 2:at + 2 + length]
            at += 2 + length
        return Answer(function, information=info, more_follows=more == 0xFF, next_object_id=next_id)
    raise ValueError(f"unexpected function {function}")
