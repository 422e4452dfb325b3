"""Where the verifier's data comes from, kept apart from what it does with it.

Every analysis consumes `RollupCube` chunks and small event lists through the `Reader`
protocol. Today there are two readers: `StoreReader` over one or more embedded stores (an
enterprise may run several gateways) and `MemoryReader` for tests and benchmarks. Signed
export bundles will come later as a third reader with the same surface.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import sqlite3
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from edge.errors import StoreError, VerificationInputError
from edge.rollup_layout import FIELDS, MINUTES_PER_DAY

from .cube import DeviceInfo, RollupCube
from .localtime import UTC, local_span, localise, utc_cover
from .window import Window

# Small chunks pipeline better: the next chunk is read (zlib, SQLite) while this one is
# analysed, so the first read and the last analysis are the only unshared time. Measured on
# 2 cores, 200 devices × 90 days from a store: 5.2 s at 128, 3.3 s at 64, 3.0 s at 32;
# 1,000 × 90 in memory: 14.9 s at 128, 12.6 s at 32. Each chunk is ~60 MB at 90 days.
DEFAULT_CHUNK_DEVICES = 32


@dataclass(frozen=True)
class EventRecord:
    """One stored event (identity change, connect, simulated history...), with its source."""

    ts_ns: int
    device_id: str | None
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class CaptureHour:
    """What was captured for one device and one hour of source time (the store's
    `capture_stats` row): samples, how many of them were backfilled (captured more than an hour
    after their source time), and the first and last capture instants (UTC ns)."""

    samples: int
    backfilled: int
    first_capture_ns: int
    last_capture_ns: int


class Reader(Protocol):
    """What analysis needs from a data source. Device ids are unique across the reader."""

    def devices(self) -> list[DeviceInfo]: ...

    def iter_cubes(self, window: Window,
                   chunk_devices: int = DEFAULT_CHUNK_DEVICES) -> Iterator[RollupCube]:
        """Cubes over the window's local days (of `window.zone`, see `local_cubes`) for
        consecutive groups of at most `chunk_devices` devices, in `devices()` order."""
        ...

    def data_span(self, window: Window | None = None) -> tuple[dt.date, dt.date] | None:
        """First and last (local) day with a stored rollup (inside `window` when given), or None.
        Optional: without it, verify reads the whole window asked for."""
        ...

    def events(self, kind: str | None = None) -> list[EventRecord]: ...

    def raw_timestamps(self, device_id: str, start_ns: int, end_ns: int,
                       limit: int = 10_000) -> np.ndarray:
        """Sorted int64 UTC-ns timestamps of retained raw samples (may be empty: retention)."""
        ...

    def capture_hours(self, device_id: str) -> Mapping[int, CaptureHour]:
        """Source hour (ts_ns // 3600 s, UTC epoch hours) -> what was captured for it; empty
        when the source predates the evidence ledger (capture time unknown). Optional: a reader
        without it is treated as such a source."""
        ...

    def integrity(self) -> Any:
        """None for a store; for a bundle its check result (edge.bundle.IntegrityResult)."""
        ...


def local_cubes(utc_cubes: Callable[[Window, int], Iterator[RollupCube]], window: Window,
                chunk_devices: int) -> Iterator[RollupCube]:
    """Cubes over the window's local days, from a reader's cubes over UTC days
    (`utc_cubes(utc_window, chunk_devices)`): every reader stores UTC days."""
    tz = window.zone
    if tz == UTC:
        yield from utc_cubes(window, chunk_devices)
        return
    cover = Window(*utc_cover(window.start, window.end, tz), UTC)
    for cube in utc_cubes(cover, chunk_devices):
        yield localise(cube, window.days, tz)


def local_data_span(utc_span: Callable[[Window | None], tuple[dt.date, dt.date] | None],
                    window: Window | None) -> tuple[dt.date, dt.date] | None:
    """First and last local day touched by a reader's UTC data span, clipped to `window`
    (UTC days when no window is given)."""
    if window is None or window.zone == UTC:
        return utc_span(window)
    span = utc_span(Window(*utc_cover(window.start, window.end, window.zone), UTC))
    if span is None:
        return None
    first, last = local_span(*span, window.zone)
    clipped = window.clip(first, last)
    return (clipped.start, clipped.end) if clipped is not None else None


def _check_chunk(chunk_devices: int) -> None:
    if chunk_devices < 1:
        raise VerificationInputError(f"chunk_devices must be at least 1, got {chunk_devices}")


class MemoryReader:
    """A reader over a cube already in memory (tests, benchmarks, later: decoded bundles)."""

    def __init__(self, devices: Sequence[DeviceInfo], cube: RollupCube, *,
                 events: Sequence[EventRecord] = (),
                 timestamps: dict[str, np.ndarray] | None = None,
                 capture: Mapping[str, Mapping[int, CaptureHour]] | None = None):
        ids = [d.id for d in devices]
        if len(set(ids)) != len(ids):
            raise VerificationInputError("MemoryReader: device ids must be unique")
        index = {d.id: i for i, d in enumerate(cube.devices)}
        missing = [i for i in ids if i not in index]
        if missing:
            raise VerificationInputError(f"MemoryReader: devices not in the cube: {missing[:5]}")
        self._devices = list(devices)
        self._rows = np.array([index[i] for i in ids], dtype=np.intp)
        self._cube = cube
        self._events = list(events)
        self._timestamps = timestamps or {}
        self._capture = {d: dict(h) for d, h in (capture or {}).items()}

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def iter_cubes(self, window: Window,
                   chunk_devices: int = DEFAULT_CHUNK_DEVICES) -> Iterator[RollupCube]:
        return local_cubes(self._utc_cubes, window, chunk_devices)

    def _utc_cubes(self, window: Window, chunk_devices: int) -> Iterator[RollupCube]:
        _check_chunk(chunk_devices)
        # Map the window's days onto the cube's; days outside the cube stay absent.
        offsets = (window.days - self._cube.days[0]).astype(np.int64) if len(self._cube.days) \
            else np.full(window.n_days, -1, dtype=np.int64)
        inside = (offsets >= 0) & (offsets < len(self._cube.days))
        for lo in range(0, len(self._devices), chunk_devices):
            rows = self._rows[lo:lo + chunk_devices]
            n = len(rows)
            data = np.zeros((n, window.n_days, len(FIELDS), MINUTES_PER_DAY), dtype=np.float32)
            present = np.zeros((n, window.n_days), dtype=bool)
            if inside.any():
                src = offsets[inside]
                data[:, inside] = self._cube.data[rows][:, src]
                present[:, inside] = self._cube.present[rows][:, src]
            yield RollupCube(self._devices[lo:lo + chunk_devices], window.days, data, present)

    def data_span(self, window: Window | None = None) -> tuple[dt.date, dt.date] | None:
        return local_data_span(self._utc_data_span, window)

    def _utc_data_span(self, window: Window | None) -> tuple[dt.date, dt.date] | None:
        days = self._cube.days[self._cube.present[self._rows].any(axis=0)]
        if window is not None:
            days = days[(days >= np.datetime64(window.start, "D"))
                        & (days <= np.datetime64(window.end, "D"))]
        return (date_of(days[0]), date_of(days[-1])) if len(days) else None

    def events(self, kind: str | None = None) -> list[EventRecord]:
        return [e for e in self._events if kind is None or e.kind == kind]

    def raw_timestamps(self, device_id: str, start_ns: int, end_ns: int,
                       limit: int = 10_000) -> np.ndarray:
        ts = np.asarray(self._timestamps.get(device_id, ()), dtype=np.int64)
        ts = np.sort(ts[(ts >= start_ns) & (ts < end_ns)])
        return ts[:limit]

    def capture_hours(self, device_id: str) -> dict[int, CaptureHour]:
        return dict(self._capture.get(device_id, {}))

    def integrity(self) -> None:
        return None


@dataclass(frozen=True)
class _Entry:
    info: DeviceInfo       # id possibly qualified with the source
    store_index: int
    store_id: str          # the id inside its own store


class StoreReader:
    """Reads one or more embedded stores, read-only.

    The same device id in two stores is kept twice (two gateways may well name a machine
    alike); both are renamed `<id>@<source>` so reports and flags stay unambiguous, and
    `DeviceInfo.source` names the store. Whether they are one machine is for the
    distinctness checks to say, from their identity evidence and signals.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]]):
        if not paths:
            raise VerificationInputError("no store given")
        try:
            from edge.store import Store  # imported late: readers of bundles do not need it
        except ImportError as e:  # pragma: no cover - only while edge.store is being written
            raise VerificationInputError(f"the embedded store is not available: {e}") from None
        self._stores = []
        self._sources: list[str] = []
        files: dict[tuple[int, int], str] = {}
        try:
            for p in paths:
                path = os.fspath(p)
                key = store_file_identity(path)
                if key in files:
                    # Refused rather than de-duplicated: the same file twice is most likely a
                    # slip for another gateway's store, which would otherwise go unread.
                    same = "given twice" if files[key] == path \
                        else f"the same file as {files[key]!r}"
                    raise VerificationInputError(
                        f"store {path!r} is {same}: give each store once")
                files[key] = path
                try:
                    self._stores.append(Store.open(path, readonly=True))
                except StoreError as e:
                    raise VerificationInputError(f"cannot open store {path!r}: {e}") from None
                self._sources.append(path)
            self._entries = self._load_devices()
        except BaseException:
            self.close()
            raise
        self._by_id = {e.info.id: e for e in self._entries}

    def close(self) -> None:
        for s in self._stores:
            s.close()

    def __enter__(self) -> "StoreReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load_devices(self) -> list[_Entry]:
        raw: list[tuple[int, Any]] = []
        for i, store in enumerate(self._stores):
            with store_data(self._sources[i]):
                raw.extend((i, rec) for rec in store.devices())
        seen = Counter(rec.id for _, rec in raw)
        entries = []
        for i, rec in raw:
            source = self._sources[i]
            _check_cycle(source, rec.id, rec.ideal_cycle_s)
            vid = rec.id if seen[rec.id] == 1 else f"{rec.id}@{source}"
            info = DeviceInfo(id=vid, name=rec.name, protocol=rec.protocol, profile=rec.profile,
                              line=rec.line, location=rec.location,
                              ideal_cycle_s=rec.ideal_cycle_s, identity=rec.identity,
                              source=source)
            entries.append(_Entry(info, i, rec.id))
        return entries

    def _verifier_id(self, store_index: int, store_id: str | None) -> str | None:
        if store_id is None:
            return None
        if store_id in self._by_id and self._by_id[store_id].store_index == store_index:
            return store_id
        qualified = f"{store_id}@{self._sources[store_index]}"
        return qualified if qualified in self._by_id else store_id

    def devices(self) -> list[DeviceInfo]:
        return [e.info for e in self._entries]

    def iter_cubes(self, window: Window,
                   chunk_devices: int = DEFAULT_CHUNK_DEVICES) -> Iterator[RollupCube]:
        return local_cubes(self._utc_cubes, window, chunk_devices)

    def _utc_cubes(self, window: Window, chunk_devices: int) -> Iterator[RollupCube]:
        _check_chunk(chunk_devices)
        first = np.datetime64(window.start, "D")
        for lo in range(0, len(self._entries), chunk_devices):
            chunk = self._entries[lo:lo + chunk_devices]
            data = np.zeros((len(chunk), window.n_days, len(FIELDS), MINUTES_PER_DAY),
                            dtype=np.float32)
            present = np.zeros((len(chunk), window.n_days), dtype=bool)
            for store_index, store in enumerate(self._stores):
                rows = {e.store_id: r for r, e in enumerate(chunk) if e.store_index == store_index}
                if not rows:
                    continue
                with store_data(self._sources[store_index]):
                    for dev_id, day, arr in store.rollup_days(list(rows), window.start,
                                                              window.end):
                        k = int((np.datetime64(day, "D") - first).astype(np.int64))
                        if dev_id not in rows or not 0 <= k < window.n_days:
                            continue
                        data[rows[dev_id], k] = arr
                        present[rows[dev_id], k] = True
            yield RollupCube([e.info for e in chunk], window.days, data, present)

    def data_span(self, window: Window | None = None) -> tuple[dt.date, dt.date] | None:
        return local_data_span(self._utc_data_span, window)

    def _utc_data_span(self, window: Window | None) -> tuple[dt.date, dt.date] | None:
        first: dt.date | None = None
        last: dt.date | None = None
        start, end = (window.start, window.end) if window is not None else (None, None)
        for i, store in enumerate(self._stores):
            # Day summaries only (no blobs): the cost grows with the data, not the window.
            with store_data(self._sources[i]):
                days = [row["day"] for row in store.rollup_day_summaries(None, start, end)]
            if days:
                first = min(days) if first is None else min(first, *days)
                last = max(days) if last is None else max(last, *days)
        return (first, last) if first is not None and last is not None else None

    def events(self, kind: str | None = None) -> list[EventRecord]:
        out: list[EventRecord] = []
        for i, store in enumerate(self._stores):
            # The store pages events; identity changes are rare, so a generous limit is safe.
            with store_data(self._sources[i]):
                for ev in store.events(kind=kind, limit=1_000_000):
                    out.append(EventRecord(int(ev.ts_ns), self._verifier_id(i, ev.device_id),
                                           ev.kind, dict(ev.data or {}), self._sources[i]))
        out.sort(key=lambda e: e.ts_ns)
        return out

    def raw_timestamps(self, device_id: str, start_ns: int, end_ns: int,
                       limit: int = 10_000) -> np.ndarray:
        entry = self._by_id.get(device_id)
        if entry is None:
            raise VerificationInputError(f"unknown device {device_id!r}")
        # Distinct instants: signals polled together share one, which is one reading, not
        # zero-length intervals.
        with store_data(self._sources[entry.store_index]):
            return self._stores[entry.store_index].sample_timestamps(
                entry.store_id, start_ns=start_ns, end_ns=end_ns, limit=limit)

    def capture_hours(self, device_id: str) -> dict[int, CaptureHour]:
        entry = self._by_id.get(device_id)
        if entry is None:
            raise VerificationInputError(f"unknown device {device_id!r}")
        # Empty for data from before the ledger (migration 5 adds capture_stats empty, and a
        # read-only open refuses an unmigrated store): capture time is then unknown.
        with store_data(self._sources[entry.store_index]):
            hours = self._stores[entry.store_index].capture_hours(entry.store_id)
            return {int(h): CaptureHour(int(r.samples), int(r.backfilled),
                                        int(r.first_capture_ns), int(r.last_capture_ns))
                    for h, r in hours.items()}

    def integrity(self) -> None:
        return None



def _check_cycle(source: str, device_id: str, cycle: object) -> None:
    # SQLite keeps whatever was written into a REAL column; a text there would surface much
    # later as a TypeError deep inside OEE.
    if cycle is None:
        return
    if isinstance(cycle, bool) or not isinstance(cycle, (int, float)) or not math.isfinite(cycle):
        raise VerificationInputError(
            f"store {source!r}: device {device_id!r} has an ideal cycle time that is not a "
            f"number ({cycle!r})")


def store_file_identity(path: str) -> tuple[int, int]:
    """(device, inode) of a store file: the same file under two names (a symlink, ./x and x,
    a hard link) is one store. VerificationInputError when `path` is not a readable file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise VerificationInputError(f"store {path!r} does not exist") from None
    except OSError as e:
        raise VerificationInputError(f"cannot read store {path!r}: {e.strerror}") from None
    if os.path.isdir(path):
        raise VerificationInputError(
            f"store {path!r} is a directory; give the store file (e.g. {path}/shangyun.db)")
    if not os.path.isfile(path):
        raise VerificationInputError(f"store {path!r} is not a regular file")
    return st.st_dev, st.st_ino


# What decoding a store's rows can raise when the file was damaged or edited by hand (a text
# blob, malformed JSON, a non-number where a number belongs); edge.store maps SQLite's own
# errors, these it lets through.
_UNREADABLE = (sqlite3.Error, zlib.error, json.JSONDecodeError, ValueError, TypeError,
               KeyError, AttributeError, IndexError)


@contextmanager
def store_data(source: str) -> Iterator[None]:
    """Errors from decoding the store `source` become VerificationInputError naming it."""
    try:
        yield
    except StoreError as e:
        raise VerificationInputError(f"store {source!r}: {e}") from None
    except _UNREADABLE as e:
        raise VerificationInputError(
            f"store {source!r} holds data this shangyun cannot read (damaged or edited?): "
            f"{type(e).__name__}: {e}") from None


def date_of(day: np.datetime64) -> dt.date:
    return day.astype("datetime64[D]").astype(dt.date)
