"""Whether a sample can be stored: checked for a whole batch before anything is written, and
by the store sink to dead-letter what cannot be stored without failing the rest."""
from __future__ import annotations

from typing import Any

from ..model import Quality, Sample

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1     # what SQLite can bind as INTEGER
QUALITIES = frozenset(Quality)
_GOOD = Quality.GOOD


def check_sample(i: int, s: Any) -> None:
    """ValueError naming sample number `i` when `s` cannot be stored."""
    problem = sample_problem(s)
    if problem is not None:
        where = f" ({s.device_id}/{s.signal})" if isinstance(s, Sample) else ""
        raise ValueError(f"sample {i}{where}: {problem}")


def sample_problem(s: Any) -> str | None:
    """Why `s` cannot be stored, or None. The reason names the kind of problem, never the value
    (dead-letter counts are kept per reason, so it must not vary per sample)."""
    # The usual sample first, in as few steps as it takes: a Sample with an int timestamp,
    # a float, int or ASCII str value, GOOD quality and non-empty names.
    if type(s) is Sample:
        v, t = s.value, type(s.value)
        ts = s.ts_ns
        d, sig = s.device_id, s.signal
        if (type(ts) is int and _I64_MIN <= ts <= _I64_MAX and s.quality is _GOOD
                and (t is float or (t is int and _I64_MIN <= v <= _I64_MAX)
                     or (t is str and v.isascii()))
                and type(d) is str and d and type(sig) is str and sig):
            return None
    return _problem(s)


def _problem(s: Any) -> str | None:
    if not isinstance(s, Sample):
        return f"expected edge.model.Sample, got {type(s).__name__}"
    ts, v = s.ts_ns, s.value
    if not isinstance(ts, int) or isinstance(ts, bool):
        return f"ts_ns must be int nanoseconds, got {type(ts).__name__}"
    if not _I64_MIN <= ts <= _I64_MAX:
        return "ts_ns out of the int64 range"
    if isinstance(v, int):
        if not _I64_MIN <= v <= _I64_MAX:
            return "int value out of the int64 range SQLite can store"
    elif isinstance(v, str):
        if not v.isascii() and not _encodable(v):
            return "str value is not valid Unicode (lone surrogate)"
    elif not isinstance(v, float):
        return f"value must be number, bool or str, got {type(v).__name__}"
    if not isinstance(s.device_id, str) or not s.device_id or not isinstance(s.signal, str) or not s.signal:
        return "device_id and signal must be non-empty strings"
    try:
        if s.quality in QUALITIES:
            return None
    except TypeError:   # unhashable
        pass
    return "bad quality"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
