"""Every threshold of the distinct-device checks, with its default and why.

The report prints `DistinctConfig().to_dict()` so a reviewer sees exactly what was applied.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DistinctConfig:
    # --- features (device_features) -------------------------------------------------------
    series_bin_min: int = 15
    """Resolution of the per-device series used for clone detection: fine enough to see a
    machine's own stops and slowdowns, coarse enough that 1,000 devices × 90 days stays small."""
    full_running_s: float = 55.0
    """A minute counts as 'running' for flat/regular checks when at least this many of its seconds
    were in the running state (partial minutes mix states and are not comparable)."""
    weekday_profile_min_days: int = 14
    """With at least this many days (two of each weekday), a device's typical day is removed per
    weekday (weekday shift patterns are shared by honest machines); with fewer, one profile for
    all working days. The device's off days (under 20 % of its usual activity: Sundays,
    holidays) always form a group of their own."""
    replay_round_decimals: int = 2
    """Day arrays are rounded to this many decimals before digesting, so a replay survives float
    noise from re-computation."""
    replay_min_changes: int = 30
    """A day is comparable only when its (rounded) per-minute values change at least this often;
    idle or switched-off days look the same on every machine and prove nothing."""

    # --- clone_of -------------------------------------------------------------------------
    clone_max_lag_min: int = 1440
    """Largest time shift searched between two devices (minutes)."""
    clone_candidate_corr: float = 0.2
    """Screening: hourly residual correlation (mean over signals, any lag) that makes a pair worth
    a precise look. Honest pairs sit near 0; this only prunes, it never flags."""
    clone_candidates_per_device: int = 5
    """At most this many screened partners per device are checked precisely."""
    clone_quick_corr: float = 0.4
    """Second screen: uncentred 15-min correlation (any lag near the screened one) below which a
    signal is not worth the exact regression. Only prunes."""
    clone_min_corr: float = 0.8
    """Flag when the residual correlation of any signal (15-min, best lag) reaches this.
    Measured on simulated honest factories (same profiles and shift calendars): highest pair
    0.23 over 30-90 days, 0.51 over a 7-day window; clones score 0.93-1.0."""
    clone_min_overlap_days: float = 3.0
    """A pair is judged only when both have data over at least this many common days (at the lag)."""
    direction_tail_days: int = 7
    """Days at the window's end kept at minute resolution to tell which of two near-copies lags
    (the copy): a week of minutes is 20 kB per device and signal in float16."""

    # --- replay ---------------------------------------------------------------------------
    replay_min_days: int = 1
    """Identical informative days needed for a replay flag (one exact repeat is already proof)."""

    # --- flat_signal / regular_signal -----------------------------------------------------
    flat_power_cv_max: float = 1e-4
    """Flag `flat_signal` when power's coefficient of variation over running minutes is below
    this; a real drive's draw varies with load by percents, not by parts per ten thousand."""
    regular_count_cv_max: float = 1e-3
    """Flag `regular_signal` when the per-minute part count of fully running minutes never varies
    (coefficient of variation below this): real cycle times drift across minute boundaries."""
    regular_min_minutes: int = 600
    """Minutes of running needed before flat/regular is judged."""

    # --- regular_timestamps ---------------------------------------------------------------
    timestamp_cv_max: float = 1e-4
    """Flag when the coefficient of variation of the normal sample intervals is below this; a
    network and a scheduler add at least tenths of a millisecond of jitter per second."""
    timestamp_min_intervals: int = 1000
    """Raw intervals needed before timestamps are judged."""

    # --- shared_endpoint ------------------------------------------------------------------
    endpoint_qualifier_keys: tuple[str, ...] = ("unit_id", "device_id", "slave_id", "node_root")
    """IdentityEvidence.details keys that tell apart devices legitimately sharing one connection
    (Modbus units behind one gateway, nodes of one aggregating OPC UA server)."""

    # --- claimed_before -------------------------------------------------------------------
    against_match_ids: bool = True
    """Match device ids against earlier claims too (the same enterprise reusing an id); turn off
    when the earlier lists come from other enterprises whose ids are not globally unique."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["endpoint_qualifier_keys"] = list(self.endpoint_qualifier_keys)
        return d
