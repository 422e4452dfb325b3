"""Distinct devices: which devices are really separate machines.

Usage (the verifier reads rollups in chunks of devices):

    blocks = [device_features(cube) for cube in chunks]        # small per-device features
    block = concat_features(blocks)
    flags = find_flags(block, devices, DistinctConfig(), against=None, raw_timing=None)

Every threshold lives in `DistinctConfig` with its default and reason; the report prints
`DistinctConfig().to_dict()`.

Reason codes (`Flag.reason`) and their measures (`Flag.measure`, `value` against `threshold`):

| reason | what it means | measure |
|---|---|---|
| `shared_identity` | the same identity fingerprint (certificate, serial number or application URI, `IdentityEvidence.fingerprint()`) as another device | `identity_fingerprint` (the fingerprint; no threshold) |
| `shared_endpoint` | read from the same physical connection as another device: endpoint + unit/device id, or the same MQTT client id | `endpoint` (the key; no threshold) |
| `clone_of` | its own fluctuations (15-min residuals after removing its typical day, z-normalised) track another device's, shifted by up to `clone_max_lag_min`, scaled or offset | `residual_corr_<signal>`: Pearson correlation at the best lag ≥ `clone_min_corr`; evidence: lag, every signal's correlation, overlap days |
| `replay` | a day exactly repeating (after rounding) an earlier day of its own or of another device, or the same day of another device | `identical_days` ≥ `replay_min_days`; evidence: the original days |
| `flat_signal` | power while running (or while sending, without a state signal) hardly varies | `power_running_cv` < `flat_power_cv_max` over ≥ `regular_min_minutes` |
| `regular_signal` | the part counter adds exactly the same amount every running minute | `count_per_minute_cv` < `regular_count_cv_max` over ≥ `regular_min_minutes` |
| `regular_timestamps` | raw sample intervals without the jitter of a real network | `interval_cv` < `timestamp_cv_max` over ≥ `timestamp_min_intervals` intervals |
| `claimed_before` | already claimed in an `--against` source: same fingerprint, serial number or id, or identical days | `identity_fingerprint` / `serial_number` / `device_id` (no threshold), or `identical_days_in_earlier_claim` ≥ `replay_min_days` |

Grouping: `shared_identity`, `shared_endpoint`, `clone_of` and same-day `replay` say two ids are
one machine. Such links join devices into groups; of each group exactly one device is kept — not
one whose signal lags another's (a clone follows its original; `clone_of` evidence gives
`follower_lag_min` measured on the window's last days at minute resolution; with no minute lag,
raw sample instants where both have them: `follower_delay_ms`, a copy re-published a steady
few ms after each original sample), then the one with
identity evidence of its own (over shared evidence, over none), then the earliest first data, then
the smallest id — and each other member is flagged with
the link to a device ahead of it (`other_device`; `evidence["kept_device"]` names the kept one).
A replay of *earlier* days flags the device showing the repeat, whoever started first.
`flat_signal`, `regular_signal`, `regular_timestamps` and `claimed_before` concern one device
and may flag a kept one.
"""
from .claimed import AgainstSet
from .config import DistinctConfig
from .detect import find_flags
from .features import FeatureBlock, concat_features, device_features

REASONS: tuple[str, ...] = (
    "clone_of", "replay", "flat_signal", "regular_signal", "regular_timestamps",
    "shared_identity", "shared_endpoint", "claimed_before",
)

__all__ = [
    "AgainstSet", "DistinctConfig", "FeatureBlock", "REASONS",
    "concat_features", "device_features", "find_flags",
]
