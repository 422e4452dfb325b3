"""The vocabulary every part of shangyun speaks: samples, quality, signal roles, machine states,
device specs and their identity evidence.

Nothing here does I/O. Connectors produce `Sample`s from a `DeviceSpec`; the pipeline, the store
and the rollups consume them; the verifier reads what the store kept.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

Value = Union[float, int, bool, str]

NS_PER_S = 1_000_000_000


def now_ns() -> int:
    """Wall-clock time in UTC nanoseconds, the timestamp unit of every Sample."""
    return time.time_ns()


class Quality(enum.IntEnum):
    """How far a value can be trusted, folded from each protocol's own status codes.

    Integer values are stored, so they must never be renumbered.
    """

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


class State(str, enum.Enum):
    """Machine states every analysis understands (the `state` role maps raw codes onto these).

    `planned_stop` is time the machine was not scheduled to run (breaks, planned maintenance);
    whether another stop reason counts as planned is the verifier's configuration, not ours.
    """

    RUNNING = "running"
    IDLE = "idle"
    STOPPED = "stopped"
    FAULT = "fault"
    SETUP = "setup"
    PLANNED_STOP = "planned_stop"

    @classmethod
    def parse(cls, raw: object) -> "State":
        """A state from its name (any case) or from a `State` already; raises ValueError."""
        if isinstance(raw, State):
            return raw
        try:
            return cls(str(raw).strip().lower())
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown machine state {raw!r}; valid: {valid}") from None


# Index order of states in rollups; never reorder (stored rollups depend on it).
STATES: tuple[State, ...] = (
    State.RUNNING,
    State.IDLE,
    State.STOPPED,
    State.FAULT,
    State.SETUP,
    State.PLANNED_STOP,
)


class Role(str, enum.Enum):
    """Signal names that analyses understand. Any other signal name is stored and shown only."""

    STATE = "state"
    COUNT_TOTAL = "count_total"
    COUNT_GOOD = "count_good"
    COUNT_REJECT = "count_reject"
    POWER_KW = "power_kw"
    ENERGY_KWH = "energy_kwh"
    ALARM = "alarm"
    REASON_CODE = "reason_code"


COUNTER_ROLES: tuple[Role, ...] = (Role.COUNT_TOTAL, Role.COUNT_GOOD, Role.COUNT_REJECT)


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one signal of one device at one instant.

    `ts_ns` is UTC nanoseconds: the source timestamp when the protocol gives one, otherwise the
    time the gateway received the value. A `state` sample's value is a `State` name string.
    """

    device_id: str
    signal: str
    ts_ns: int
    value: Value
    quality: Quality = Quality.GOOD


@dataclass(frozen=True, slots=True)
class IdentityEvidence:
    """What the protocol says the machine is, captured at onboarding and re-checked on connect.

    `fingerprint()` is the comparable core: two devices with the same non-empty fingerprint are
    the same physical machine (or one endpoint posing as several). `details` keeps everything
    seen (BuildInfo, Modbus 43/14 objects, client id...) for the reviewer.
    """

    protocol: str
    endpoint: str = ""
    application_uri: str = ""
    serial_number: str = ""
    certificate_sha256: str = ""
    client_id: str = ""
    details: Mapping[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Strongest available identity claim; '' when the protocol gave nothing usable."""
        for part in (self.certificate_sha256, self.serial_number, self.application_uri):
            if part:
                return f"{self.protocol}:{part}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "endpoint": self.endpoint,
            "application_uri": self.application_uri,
            "serial_number": self.serial_number,
            "certificate_sha256": self.certificate_sha256,
            "client_id": self.client_id,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "IdentityEvidence":
        return cls(
            protocol=str(d.get("protocol", "")),
            endpoint=str(d.get("endpoint", "")),
            application_uri=str(d.get("application_uri", "")),
            serial_number=str(d.get("serial_number", "")),
            certificate_sha256=str(d.get("certificate_sha256", "")),
            client_id=str(d.get("client_id", "")),
            details={str(k): str(v) for k, v in dict(d.get("details", {})).items()},
        )


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """How one raw protocol value becomes a Sample value.

    `address` is protocol specific and validated by the connector's own config model (an OPC UA
    node id, a Modbus register spec, a JSON path). `scale`/`offset` apply to numbers
    (value * scale + offset). `states` maps raw codes (as strings) to `State` names for the
    `state` role; a code missing from the map yields an UNCERTAIN sample carrying the raw value.
    """

    name: str
    address: Any = None
    scale: float = 1.0
    offset: float = 0.0
    states: Mapping[str, str] = field(default_factory=dict)

    def convert(self, raw: Value) -> tuple[Value, Quality]:
        """Raw protocol value -> (sample value, quality)."""
        if self.name == Role.STATE.value:
            key = _state_key(raw)
            if self.states:
                mapped = self.states.get(key)
                if mapped is None:
                    return str(raw), Quality.UNCERTAIN
                return mapped, Quality.GOOD
            try:
                return State.parse(raw).value, Quality.GOOD
            except ValueError:
                return str(raw), Quality.UNCERTAIN
        if isinstance(raw, bool) or isinstance(raw, str):
            return raw, Quality.GOOD
        if self.scale == 1.0 and self.offset == 0.0:
            return raw, Quality.GOOD
        return raw * self.scale + self.offset, Quality.GOOD


def _state_key(raw: Value) -> str:
    # 3.0 from a float register and 3 from an int register are the same state code.
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One machine as the gateway knows it.

    `connection` holds the protocol settings (already validated by the connector's config model);
    `expected_identity` is what was captured at onboarding, if anything.
    """

    id: str
    name: str
    protocol: str
    connection: Mapping[str, Any]
    signals: tuple[SignalSpec, ...]
    profile: str = ""
    line: str = ""
    location: str = ""
    ideal_cycle_s: float | None = None
    expected_identity: IdentityEvidence | None = None

    def signal(self, name: str) -> SignalSpec | None:
        for s in self.signals:
            if s.name == name:
                return s
        return None
