"""Small per-device features, computed one chunk of devices at a time.

The cube of a whole review does not fit in memory (1,000 devices × 90 days ≈ 6.7 GB), so each
chunk is reduced to a `FeatureBlock` (≈ 60 kB per device for 90 days) and the blocks are joined
before devices are compared with each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edge.rollup_layout import F, MINUTES_PER_DAY

from ..cube import RollupCube
from ..localtime import slot_minutes
from .config import DistinctConfig
from .digests import day_digests
from .direction import minute_tail
from .series import SERIES_SIGNALS, binned_signals, residual_series
from .stats import day_sums

NO_DATA = np.iinfo(np.int64).max
"""first_data_min of a device that never sent anything (sorts last when choosing who is kept)."""


@dataclass
class FeatureBlock:
    """Features of a list of devices over one window of consecutive (local) days.

    first/last_data_min are epoch minutes (UTC). series is float16 residual z-scores
    (devices, SERIES_SIGNALS, days × bins), NaN where there is no data or no own variance.
    minute_tail is the last days at minute resolution (verifier.distinct.direction).
    """

    device_ids: list[str]
    days: np.ndarray
    first_data_min: np.ndarray
    last_data_min: np.ndarray
    day_digest: np.ndarray
    day_informative: np.ndarray
    series: np.ndarray
    day_stats: np.ndarray
    minute_tail: np.ndarray           # (devices, TAIL_SIGNALS, tail minutes), see direction
    settings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.device_ids)

    @property
    def bins_per_day(self) -> int:
        return MINUTES_PER_DAY // int(self.settings["series_bin_min"])

    def day_labels(self, idx: Sequence[int] | np.ndarray) -> tuple[str, ...]:
        return tuple(str(self.days[int(k)]) for k in idx)

    def order_key(self, i: int) -> tuple[int, str]:
        """Who is kept of a group of devices that are one machine: earliest first data, then id."""
        return int(self.first_data_min[i]), self.device_ids[i]


def _settings(config: DistinctConfig) -> dict[str, float]:
    return {
        "series_bin_min": config.series_bin_min,
        "full_running_s": config.full_running_s,
        "weekday_profile_min_days": config.weekday_profile_min_days,
        "replay_round_decimals": config.replay_round_decimals,
        "replay_min_changes": config.replay_min_changes,
        "direction_tail_days": config.direction_tail_days,
    }


def device_features(cube: RollupCube, config: DistinctConfig | None = None) -> FeatureBlock:
    """Reduce one chunk of devices to the features find_flags compares."""
    config = config or DistinctConfig()
    if MINUTES_PER_DAY % config.series_bin_min:
        raise ValueError(f"series_bin_min {config.series_bin_min} must divide {MINUTES_PER_DAY}")
    data = cube.data
    days = np.asarray(cube.days).astype("datetime64[D]")
    first, last = _data_span(data, days, cube.tz)
    digest, informative = day_digests(data, config.replay_round_decimals, config.replay_min_changes)
    binned = binned_signals(data, config.series_bin_min)
    series = residual_series(binned, days, config.weekday_profile_min_days)
    return FeatureBlock(
        device_ids=list(cube.device_ids),
        days=days,
        first_data_min=first,
        last_data_min=last,
        day_digest=digest,
        day_informative=informative & cube.present,
        series=series,
        day_stats=day_sums(data, config.full_running_s),
        minute_tail=minute_tail(data, config.direction_tail_days),
        settings=_settings(config),
    )


def _data_span(data: np.ndarray, days: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray]:
    has = (data[:, :, F["samples"], :] > 0).reshape(data.shape[0], -1)
    any_data = has.any(axis=1)
    slots = slot_minutes(days, tz)[0].reshape(-1) if len(days) else np.zeros(1, np.int64)
    first = np.where(any_data, slots[has.argmax(axis=1)], NO_DATA).astype(np.int64)
    last_idx = has.shape[1] - 1 - has[:, ::-1].argmax(axis=1)
    last = np.where(any_data, slots[last_idx], NO_DATA).astype(np.int64)
    return first, last


def concat_features(blocks: Sequence[FeatureBlock]) -> FeatureBlock:
    """Join blocks of the same window and settings, in order."""
    if not blocks:
        raise ValueError("concat_features needs at least one block")
    head = blocks[0]
    for b in blocks[1:]:
        if not np.array_equal(b.days, head.days):
            raise ValueError("feature blocks cover different days; read every chunk over one window")
        if b.settings != head.settings:
            raise ValueError(f"feature blocks computed with different settings: {b.settings} vs {head.settings}")

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in blocks], axis=0)

    return FeatureBlock(
        device_ids=[i for b in blocks for i in b.device_ids],
        days=head.days,
        first_data_min=cat("first_data_min"),
        last_data_min=cat("last_data_min"),
        day_digest=cat("day_digest"),
        day_informative=cat("day_informative"),
        series=cat("series"),
        day_stats=cat("day_stats"),
        minute_tail=cat("minute_tail"),
        settings=dict(head.settings),
    )


__all__ = ["FeatureBlock", "device_features", "concat_features", "NO_DATA", "SERIES_SIGNALS"]
