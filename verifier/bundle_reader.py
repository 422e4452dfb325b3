"""A verifier Reader over an evidence bundle (edge.bundle): the whole verification runs from the
bundle alone, and the bundle's integrity check (`integrity()`) heads the report.

    with BundleReader("bundle.zip", CheckOptions(key="ed25519:…")) as reader:
        report = verify(reader, window=..., voucher=...)
        report = with_integrity(report, reader.integrity())
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import zipfile
from collections import defaultdict
from typing import Any, Iterator

import numpy as np

from edge.bundle import Bundle, CheckOptions, IntegrityResult, RollupRef, check_bundle
from edge.bundle.format import CAPTURE_STATS, DEVICES, EVENTS, RAW_SAMPLES
from edge.errors import StoreError, VerificationInputError
from edge.model import IdentityEvidence
from edge.rollup_codec import unpack_day
from edge.rollup_layout import FIELDS, MINUTES_PER_DAY
from edge.store.ledger import CaptureHour

from .cube import DeviceInfo, RollupCube
from .policy import Problem
from .reading import (DEFAULT_CHUNK_DEVICES, EventRecord, _check_chunk, _check_cycle,
                      local_cubes, local_data_span)
from .window import Window


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """A zip file is taken for a bundle (a SQLite store never is one)."""
    return os.path.isfile(path) and zipfile.is_zipfile(path)


class BundleReader:
    """Reads one bundle. Opening checks only that it is a bundle (BundleError, a
    VerificationInputError, otherwise); `integrity()` runs the full check once."""

    def __init__(self, path: str | os.PathLike[str], options: CheckOptions | None = None):
        self.path = os.fspath(path)
        self._options = options
        self._bundle = Bundle.open(self.path)
        self._integrity: IntegrityResult | None = None
        self._raw: dict[str, np.ndarray] | None = None
        self._capture: dict[str, dict[int, CaptureHour]] | None = None
        try:
            self._devices = self._load_devices()
            self._refs: dict[str, list[RollupRef]] = defaultdict(list)
            for ref in self._bundle.rollup_refs():
                if _is_day(ref.day):   # else unreadable: integrity() names it, verify FAILs
                    self._refs[ref.device_id].append(ref)
        except BaseException:
            self._bundle.close()
            raise

    def close(self) -> None:
        self._bundle.close()

    def __enter__(self) -> "BundleReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load_devices(self) -> list[DeviceInfo]:
        raw = self._bundle.json(DEVICES, default=[])
        if not isinstance(raw, list):
            raise VerificationInputError(f"bundle {self.path!r}: {DEVICES} is not a list")
        out, seen = [], set()
        for d in raw:
            try:
                dev = str(d["id"])
                ident = IdentityEvidence.from_dict(d["identity"]) if d.get("identity") else None
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise VerificationInputError(
                    f"bundle {self.path!r}: {DEVICES} holds a malformed device: {e}") from None
            if dev in seen:
                raise VerificationInputError(f"bundle {self.path!r}: device {dev!r} twice")
            seen.add(dev)
            _check_cycle(self.path, dev, d.get("ideal_cycle_s"))
            out.append(DeviceInfo(id=dev, name=str(d.get("name") or ""),
                                  protocol=str(d.get("protocol") or ""),
                                  profile=str(d.get("profile") or ""),
                                  line=str(d.get("line") or ""),
                                  location=str(d.get("location") or ""),
                                  ideal_cycle_s=d.get("ideal_cycle_s"), identity=ident,
                                  source=self.path))
        return out

    # ------------------------------------------------------------------ the Reader surface
    def integrity(self) -> IntegrityResult:
        if self._integrity is None:
            self._integrity = check_bundle(self._bundle, self._options)
        return self._integrity

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def iter_cubes(self, window: Window,
                   chunk_devices: int = DEFAULT_CHUNK_DEVICES) -> Iterator[RollupCube]:
        return local_cubes(self._utc_cubes, window, chunk_devices)

    def _utc_cubes(self, window: Window, chunk_devices: int) -> Iterator[RollupCube]:
        _check_chunk(chunk_devices)
        first = np.datetime64(window.start, "D")
        lo_day, hi_day = window.start.isoformat(), window.end.isoformat()
        for lo in range(0, len(self._devices), chunk_devices):
            chunk = self._devices[lo:lo + chunk_devices]
            data = np.zeros((len(chunk), window.n_days, len(FIELDS), MINUTES_PER_DAY),
                            dtype=np.float32)
            present = np.zeros((len(chunk), window.n_days), dtype=bool)
            for row, info in enumerate(chunk):
                for ref in self._refs.get(info.id, ()):
                    if not lo_day <= ref.day <= hi_day:
                        continue
                    k = int((np.datetime64(ref.day, "D") - first).astype(np.int64))
                    data[row, k] = self._day(ref)
                    present[row, k] = True
            yield RollupCube(list(chunk), window.days, data, present)

    def _day(self, ref: RollupRef) -> np.ndarray:
        where = f"{ref.device_id}/{ref.day}"
        try:
            return unpack_day(self._bundle.rollup_blob(ref), ref.layout_version, where)
        except StoreError as e:
            raise VerificationInputError(f"bundle {self.path!r}: {e}") from None

    def data_span(self, window: Window | None = None) -> tuple[dt.date, dt.date] | None:
        return local_data_span(self._utc_data_span, window)

    def _utc_data_span(self, window: Window | None) -> tuple[dt.date, dt.date] | None:
        known = {d.id for d in self._devices}
        days = [r.day for dev, refs in self._refs.items() if dev in known for r in refs]
        if window is not None:
            lo, hi = window.start.isoformat(), window.end.isoformat()
            days = [d for d in days if lo <= d <= hi]
        if not days:
            return None
        return dt.date.fromisoformat(min(days)), dt.date.fromisoformat(max(days))

    def events(self, kind: str | None = None) -> list[EventRecord]:
        out = []
        for no, e in self._bundle.lines(EVENTS):
            if kind is not None and e.get("kind") != kind:
                continue
            try:
                out.append(EventRecord(int(e["ts_ns"]), e.get("device_id"), str(e["kind"]),
                                       dict(e.get("data") or {}), self.path))
            except (KeyError, TypeError, ValueError) as exc:
                raise VerificationInputError(
                    f"bundle {self.path!r}: {EVENTS} line {no} is malformed: {exc}") from None
        out.sort(key=lambda r: r.ts_ns)
        return out

    def raw_timestamps(self, device_id: str, start_ns: int, end_ns: int,
                       limit: int = 10_000) -> np.ndarray:
        if device_id not in {d.id for d in self._devices}:
            raise VerificationInputError(f"unknown device {device_id!r}")
        ts = self._raw_index().get(device_id)
        if ts is None:
            return np.zeros(0, dtype=np.int64)
        return ts[(ts >= start_ns) & (ts < end_ns)][:limit]

    def _raw_index(self) -> dict[str, np.ndarray]:
        if self._raw is None:
            per: dict[str, list[int]] = defaultdict(list)
            for no, s in self._bundle.lines(RAW_SAMPLES):
                try:
                    per[str(s[0])].append(int(s[2]))
                except (IndexError, TypeError, ValueError) as e:
                    raise VerificationInputError(
                        f"bundle {self.path!r}: {RAW_SAMPLES} line {no} is malformed: {e}") from None
            # Distinct instants, as the store gives them: signals read together are one reading.
            self._raw = {d: np.unique(np.asarray(t, dtype=np.int64)) for d, t in per.items()}
        return self._raw

    def capture_hours(self, device_id: str) -> dict[int, CaptureHour]:
        if self._capture is None:
            per: dict[str, dict[int, CaptureHour]] = defaultdict(dict)
            for no, r in self._bundle.lines(CAPTURE_STATS):
                try:
                    per[str(r["device_id"])][int(r["hour"])] = CaptureHour(
                        int(r["samples"]), int(r["backfilled"]), int(r["first_capture_ns"]),
                        int(r["last_capture_ns"]))
                except (KeyError, TypeError, ValueError) as e:
                    raise VerificationInputError(
                        f"bundle {self.path!r}: {CAPTURE_STATS} line {no} is malformed: {e}"
                    ) from None
            self._capture = dict(per)
        return dict(self._capture.get(device_id, {}))


def _is_day(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def with_integrity(report: Any, integrity: IntegrityResult | None) -> Any:
    """The report with an altered bundle's verdict turned to FAIL, the reason first: data that
    was changed after capture supports no claim, whatever it shows."""
    if integrity is None or integrity.intact:
        return report
    first = integrity.problems[0].text()
    more = f" (and {len(integrity.problems) - 1} more problems)" if len(integrity.problems) > 1 \
        else ""
    reason = Problem("bundle_altered", f"the evidence bundle was altered after capture: "
                                       f"{first}{more}")
    report.verdict = dataclasses.replace(report.verdict, verdict="FAIL",
                                         reasons=(reason, *report.verdict.reasons))
    return report


def open_reader(paths: list[str], *, key: str | None = None,
                witness_key_files: list[str] | tuple[str, ...] = ()) -> Any:
    """A BundleReader for one bundle, else a StoreReader over the stores given."""
    from .reading import StoreReader

    bundles = [p for p in paths if is_bundle(p)]
    if not bundles:
        return StoreReader(paths)
    if len(paths) > 1:
        raise VerificationInputError(
            f"give one bundle alone, not with other bundles or stores ({', '.join(paths)})")
    try:
        witness_keys = tuple(open(f, "rb").read() for f in witness_key_files)
    except OSError as e:
        raise VerificationInputError(f"cannot read --witness-key: {e}") from None
    return BundleReader(bundles[0], CheckOptions(key=key, witness_keys=witness_keys))
