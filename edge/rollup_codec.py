"""How a rollup day array (edge.rollup_layout) is kept in the store: zlib-compressed float32.

Fields are appended across layout versions, never reordered, so an older record is read by
padding the missing trailing fields with zeros; a record from a newer layout than this code knows
cannot be interpreted and raises StoreVersionError.
"""
from __future__ import annotations

import datetime as dt
import sqlite3
import zlib
from typing import Any

import numpy as np

from .errors import StoreError, StoreVersionError
from .model import now_ns
from .rollup_layout import F, FIELDS, LAYOUT_VERSION, MINUTES_PER_DAY

# Level 1: day arrays are mostly zeros or repeated values, so extra effort buys little while
# writing happens on every roll-up.
_ZLIB_LEVEL = 1

SUMMARY_COLUMNS: tuple[str, ...] = (
    "running_s", "count_total", "count_good", "energy_kwh", "samples", "minutes_with_data",
)


def check_day_array(arr: np.ndarray) -> np.ndarray:
    """`arr` as a C-contiguous float32 day array; ValueError naming the expected shape."""
    a = np.asarray(arr)
    expected = (len(FIELDS), MINUTES_PER_DAY)
    if a.shape != expected:
        raise ValueError(f"rollup day array must have shape {expected} (fields × minutes), got {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def pack_day(arr: np.ndarray) -> bytes:
    return zlib.compress(check_day_array(arr).tobytes(), _ZLIB_LEVEL)


def unpack_day(blob: bytes, layout_version: int, where: str = "") -> np.ndarray:
    if layout_version > LAYOUT_VERSION:
        raise StoreVersionError(
            f"rollup day {where} has layout version {layout_version}; this shangyun reads up to "
            f"{LAYOUT_VERSION}. Upgrade shangyun."
        )
    try:
        raw = zlib.decompress(blob)
    except zlib.error as exc:
        raise StoreError(f"rollup day {where} is corrupt: {exc}") from exc
    flat = np.frombuffer(raw, dtype=np.float32)
    if flat.size % MINUTES_PER_DAY:
        raise StoreError(f"rollup day {where} is corrupt: {flat.size} values is not whole minutes")
    n_fields = flat.size // MINUTES_PER_DAY
    if n_fields == len(FIELDS):
        return flat.reshape(n_fields, MINUTES_PER_DAY).copy()
    if n_fields > len(FIELDS):
        raise StoreError(f"rollup day {where} is corrupt: {n_fields} fields for layout {layout_version}")
    out = np.zeros((len(FIELDS), MINUTES_PER_DAY), dtype=np.float32)
    out[:n_fields] = flat.reshape(n_fields, MINUTES_PER_DAY)
    return out


def summarize_day(arr: np.ndarray) -> dict[str, Any]:
    """Day totals stored next to the blob (keys: SUMMARY_COLUMNS)."""
    a = arr.astype(np.float64, copy=False)
    samples = a[F["samples"]]
    return {
        "running_s": float(a[F["running_s"]].sum()),
        "count_total": float(a[F["count_total"]].sum()),
        "count_good": float(a[F["count_good"]].sum()),
        "energy_kwh": float(a[F["energy_kwh"]].sum()),
        "samples": int(samples.sum()),
        "minutes_with_data": int(np.count_nonzero(samples)),
    }


def upsert_day(conn: sqlite3.Connection, device_id: str, day: dt.date, blob: bytes,
               summary: dict[str, Any]) -> None:
    """Insert or replace one day record (inside the caller's transaction)."""
    conn.execute(
        f"""INSERT OR REPLACE INTO rollup_days
              (device_id, day, layout_version, data, {', '.join(SUMMARY_COLUMNS)}, updated_ns)
            VALUES (?, ?, ?, ?, {', '.join('?' * len(SUMMARY_COLUMNS))}, ?)""",
        (device_id, day.isoformat(), LAYOUT_VERSION, blob,
         *(summary[c] for c in SUMMARY_COLUMNS), now_ns()))
