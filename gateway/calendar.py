"""The plant's shift calendar, referenced from the gateway config (`gateway.calendar: FILE`), so
the dashboard's OEE counts the same planned time as the reviewer's report.

```yaml
utc_offset_h: 8
holidays: [2024-02-10]
shifts:
  - {name: day, start: "08:00", end: "20:00", days: [mon, tue, wed, thu, fri], breaks: [["12:00", "13:00"]]}
planned_states: [planned_stop, setup]   # which machine states are planned stops (default: planned_stop)
```

The file is read strictly: a misspelt key (`shift:` for `shifts:`) would otherwise leave the
calendar empty, which means 24/7 production, and every figure would silently change. Unknown
keys and malformed times are refused with the file and the line. The semantics (what a shift
past midnight means, breaks, holidays) are the verifier's, built by `ShiftCalendar.from_mapping`.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.errors import ConfigError, VerificationInputError
from edge.model import State
from verifier.oee import OeeConfig
from verifier.shifts import WEEKDAYS, ShiftCalendar

from .yamlconfig import load_yaml, validate

_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")


def _time(v: Any) -> str:
    """A time of day "HH:MM", 00:00 to 24:00."""
    if isinstance(v, int) and not isinstance(v, bool):
        # YAML 1.1 reads an unquoted 20:00 as the base-60 number 1200.
        raise ValueError(f"got the number {v}: quote times, e.g. \"20:00\" (unquoted, YAML reads "
                         "20:00 as a base-60 number)")
    m = _HHMM.match(v.strip()) if isinstance(v, str) else None
    if m is None or int(m[2]) >= 60 or int(m[1]) * 60 + int(m[2]) > 24 * 60:
        raise ValueError(f"{v!r} is not a time of day HH:MM (00:00-24:00)")
    return v.strip()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShiftConfig(_Strict):
    name: str = ""
    start: str
    end: str
    days: list[str] = Field(default_factory=lambda: list(WEEKDAYS))
    breaks: list[tuple[str, str]] = Field(default_factory=list)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _times(cls, v: Any) -> str:
        return _time(v)

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        bad = [d for d in v if str(d).lower()[:3] not in WEEKDAYS or len(str(d)) < 3]
        if bad:
            raise ValueError(f"unknown days {bad}; use {', '.join(WEEKDAYS)}")
        return v

    @field_validator("breaks", mode="before")
    @classmethod
    def _breaks(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [tuple(_time(t) for t in b) if isinstance(b, (list, tuple)) else b for b in v]
        return v


class CalendarConfig(_Strict):
    utc_offset_h: float = Field(8.0, ge=-14, le=14)
    holidays: list[dt.date] = Field(default_factory=list)
    shifts: list[ShiftConfig] = Field(default_factory=list)
    planned_states: list[str] = Field(default_factory=lambda: ["planned_stop"])

    @field_validator("planned_states")
    @classmethod
    def _planned(cls, v: list[str]) -> list[str]:
        states = [State.parse(s).value for s in v]  # ValueError lists the valid states
        if "running" in states:
            raise ValueError("running cannot be a planned stop")
        return states


def load_calendar(path: str | Path) -> OeeConfig:
    """The OEE configuration (calendar and planned-stop states) of a calendar file."""
    doc = load_yaml(path)
    if doc.data in (None, {}):
        raise ConfigError("the calendar file is empty; give `shifts:` (or delete the "
                          "reference for 24/7 production)", path=doc.path)
    cfg: CalendarConfig = validate(doc, CalendarConfig)
    for i, shift in enumerate(cfg.shifts):
        if shift.start == shift.end:
            raise ConfigError(f"shifts[{i}]: start equals end", path=doc.path,
                              line=doc.line_of(("shifts", i)))
    try:
        calendar = ShiftCalendar.from_mapping(cfg.model_dump(exclude={"planned_states"}),
                                              where=doc.path)
        return OeeConfig(calendar=calendar, planned_states=frozenset(cfg.planned_states))
    except (VerificationInputError, ValueError) as e:
        raise ConfigError(str(e), path=doc.path) from None
