"""Per device-day digests of rounded rollups, to find exact repeats (replays).

A linear hash with fixed pseudo-random 64-bit weights (wrapping arithmetic) is vectorised over
all days at once and is as good as a cryptographic hash here: nobody gains by *creating* a
collision, the forger wants to avoid one. The weights are fixed so digests from different runs
and from `--against` stores compare.
"""
from __future__ import annotations

import numpy as np

from edge.rollup_layout import F, MINUTES_PER_DAY

DIGEST_FIELDS: tuple[str, ...] = ("running_s", "count_total", "power_mean_kw", "samples")
"""What a replay must repeat. `samples` enters only as has-data (0/1): a replay sent again over a
network may arrive with a different number of samples per minute."""

_rng = np.random.default_rng(0x5EA1_D16E)
_FIELD_WEIGHTS = _rng.integers(1, 2**63, size=len(DIGEST_FIELDS), dtype=np.uint64) | np.uint64(1)
_MINUTE_WEIGHTS = _rng.integers(1, 2**63, size=MINUTES_PER_DAY, dtype=np.uint64) | np.uint64(1)


def day_digests(data: np.ndarray, decimals: int, min_changes: int) -> tuple[np.ndarray, np.ndarray]:
    """(devices, days, fields, minutes) -> (digest uint64, informative bool), each (devices, days).

    A day is informative when it has data and its rounded per-minute values change at least
    `min_changes` times: switched-off or idle days are identical on every machine of a type.
    """
    n_dev, n_days = data.shape[:2]
    scale = np.float32(10.0**decimals)
    per_minute = np.zeros((n_dev, n_days, MINUTES_PER_DAY), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name, weight in zip(DIGEST_FIELDS, _FIELD_WEIGHTS):
            values = data[:, :, F[name], :]
            if name == "samples":
                ints = (values > 0).astype(np.uint64)
            else:
                ints = np.rint(values * scale).astype(np.int64).view(np.uint64)
            per_minute += ints * weight
        digest = (per_minute * _MINUTE_WEIGHTS).sum(axis=2, dtype=np.uint64)
    changes = (per_minute[:, :, 1:] != per_minute[:, :, :-1]).sum(axis=2)
    has_data = (data[:, :, F["samples"], :] > 0).any(axis=2)
    return digest, has_data & (changes >= min_changes)
