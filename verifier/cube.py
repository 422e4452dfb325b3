"""The verifier's in-memory view of rollups: devices × days × fields × minutes, as numpy.

Reading (verifier.reading) produces these; analysis (activity, distinct, oee, energy) consumes
them and never touches a store. Large reviews are read in chunks of devices so memory stays
bounded (1,000 devices × 90 days in one array would be ~6.7 GB of float32); analyses that
compare devices with each other work on small per-device features, not on whole cubes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.model import IdentityEvidence
from edge.rollup_layout import FIELDS, MINUTES_PER_DAY, F


@dataclass(frozen=True)
class DeviceInfo:
    id: str
    name: str = ""
    protocol: str = ""
    profile: str = ""
    line: str = ""
    location: str = ""
    ideal_cycle_s: float | None = None
    identity: IdentityEvidence | None = None
    source: str = ""          # which store or bundle it came from


@dataclass
class RollupCube:
    """`data[d, k, f, m]`: device d, day k, field f (edge.rollup_layout.FIELDS), minute m.

    `present[d, k]` is False where no day record exists (all zeros in `data`).
    `days` are local dates of the zone `tz` as numpy datetime64[D], consecutive; slot m of day
    k starts m minutes after that day's local midnight (verifier.localtime). Stores hold UTC
    days; readers rearrange them (`lost_minutes`: minutes with data dropped doing so, only on
    25-hour daylight-saving days).
    """

    devices: list[DeviceInfo]
    days: np.ndarray
    data: np.ndarray
    present: np.ndarray
    tz: str = "UTC"
    lost_minutes: int = 0

    def __post_init__(self) -> None:
        n_dev, n_days = len(self.devices), len(self.days)
        if self.data.shape != (n_dev, n_days, len(FIELDS), MINUTES_PER_DAY):
            raise ValueError(f"cube data shape {self.data.shape} does not match "
                             f"{n_dev} devices × {n_days} days")
        if self.present.shape != (n_dev, n_days):
            raise ValueError("present mask shape mismatch")

    def field(self, name: str) -> np.ndarray:
        """(devices, days, minutes) view of one field."""
        return self.data[:, :, F[name], :]

    @property
    def device_ids(self) -> list[str]:
        return [d.id for d in self.devices]


@dataclass(frozen=True)
class Flag:
    """Why a device is not counted, with evidence a reviewer can check.

    `reason` is a stable code (documented in verifier/README.md), e.g. `clone_of`, `replay`,
    `flat_signal`, `regular_timestamps`, `shared_identity`, `claimed_before`, `inactive`,
    `too_few_days`, `bunched_at_end`, `identity_changed`.
    """

    device_id: str
    reason: str
    message: str
    other_device: str | None = None
    days: tuple[str, ...] = ()
    measure: str = ""
    value: float | None = None
    threshold: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "reason": self.reason,
            "message": self.message,
            "other_device": self.other_device,
            "days": list(self.days),
            "measure": self.measure,
            "value": self.value,
            "threshold": self.threshold,
            "evidence": self.evidence,
        }
