"""The shape of a stored rollup: one record per device and day, 1440 minutes of fixed fields.

A day record is a float32 array of shape (len(FIELDS), MINUTES_PER_DAY), UTC days.
Minutes with no data have `samples == 0` and all state seconds 0; the seconds of a minute not
covered by any state are *unknown* (no data), never downtime.

Field order is part of the stored format: append new fields at the end and bump LAYOUT_VERSION.
"""
from __future__ import annotations

import numpy as np

from .model import STATES

MINUTES_PER_DAY = 1440
SECONDS_PER_DAY = 86_400

STATE_FIELDS: tuple[str, ...] = tuple(f"{s.value}_s" for s in STATES)

FIELDS: tuple[str, ...] = STATE_FIELDS + (
    "count_total",      # increase of the total part counter in the minute (wrap/reset handled)
    "count_good",       # increase of the good part counter
    "count_reject",     # increase of the reject counter
    "energy_kwh",       # energy increase: from the meter when present, else integrated power
    "power_mean_kw",    # time-weighted mean power over the covered part of the minute
    "power_max_kw",     # highest power value seen in (or held into) the minute
    "samples",          # number of samples received for the device in the minute
    # Layout 2:
    "reason_code",      # the stop reason code held longest in the minute (0: none reported)
)

LAYOUT_VERSION = 2

F = {name: i for i, name in enumerate(FIELDS)}
"""Field name -> row index in a day array."""

STATE_ROWS = slice(0, len(STATE_FIELDS))


def empty_day() -> np.ndarray:
    return np.zeros((len(FIELDS), MINUTES_PER_DAY), dtype=np.float32)
