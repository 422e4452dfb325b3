"""InfluxDB line protocol for what the outbox forwards (the layout is documented in docs/influxdb.md).

    shangyun,site=S,line=L,device=D,protocol=P,signal=power_kw value=3.2,quality=0i 1700000000000000000
    shangyun,site=S,line=L,device=D,protocol=P,signal=state text="running",quality=0i 1700000000000000000
    shangyun_rollup,site=S,line=L,device=D,protocol=P running_s=42,...,samples=61 1700000000000000000

A point is identified by measurement, tags and timestamp: writing it again overwrites it, which
makes a resent batch idempotent. Numbers and bools go to the float field `value` (InfluxDB refuses
a field whose type changes between points, so ints are not a type of their own; bools are 1/0),
text to `text`. A value line protocol cannot carry (NaN, infinity, the empty value of a BAD
sample) leaves the field out: the point still carries its quality. Empty tags are left out, as
InfluxDB refuses them.
"""
from __future__ import annotations

import math
from typing import Iterable

from ..model import Sample
from ..outbox import Item, RollupMinute
from .base import Batch, DeviceInfo

_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\", "\n": " ", "\r": " "})
_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\", "\n": " ", "\r": " "})
_STRING = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n", "\r": r"\r"})


def escape_key(text: str) -> str:
    return text.translate(_KEY)


def escape_measurement(text: str) -> str:
    return text.translate(_MEASUREMENT)


def _number(v: float) -> str | None:
    if math.isnan(v) or math.isinf(v):
        return None
    return repr(float(v))


def _tags(site: str, device_id: str, info: DeviceInfo, extra: Iterable[tuple[str, str]] = ()) -> str:
    pairs = [("site", site), ("line", info.line), ("device", device_id), ("protocol", info.protocol),
             *extra]
    return "".join(f",{k}={escape_key(v)}" for k, v in pairs if v)


def sample_line(measurement: str, site: str, s: Sample, info: DeviceInfo) -> str:
    fields = []
    v = s.value
    if isinstance(v, str):
        if v:
            fields.append(f'text="{v.translate(_STRING)}"')
    else:
        num = _number(float(v))
        if num is not None:
            fields.append(f"value={num}")
    fields.append(f"quality={int(s.quality)}i")
    tags = _tags(site, s.device_id, info, (("signal", s.signal),))
    return f"{escape_measurement(measurement)}{tags} {','.join(fields)} {s.ts_ns}"


def rollup_line(measurement: str, site: str, r: RollupMinute, info: DeviceInfo) -> str:
    fields = ",".join(f"{escape_key(k)}={n}" for k, v in r.fields.items()
                      if (n := _number(v)) is not None)
    return f"{escape_measurement(measurement)}{_tags(site, r.device_id, info)} {fields} {r.ts_ns}"


def lines(batch: Batch, *, measurement: str, rollup_measurement: str, site: str) -> list[str]:
    out = []
    for item in batch.items:
        out.append(_line(item, batch, measurement, rollup_measurement, site))
    return out


def _line(item: Item, batch: Batch, measurement: str, rollup_measurement: str, site: str) -> str:
    if isinstance(item, RollupMinute):
        return rollup_line(rollup_measurement, site, item, batch.device(item.device_id))
    return sample_line(measurement, site, item, batch.device(item.device_id))
