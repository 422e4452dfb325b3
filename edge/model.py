"""The vocabulary every part of shangyun speaks: samples, quality, signal roles, machine states,
device specs and their identity evidence.

Nothing here does I/O. Connectors produce `Sample`s from a `DeviceSpec`; the pipeline, the store
and the rollups consume them; the verifier reads what the store kept.
"""
from __future__ import annotations

import enum
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Union

from .errors import PayloadError

Value = Union[float, int, bool, str]

NO_VALUE: Value = ""
"""The value of a sample that carries no reading (BAD): "" cannot pass for a number."""

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
_COUNTERS = frozenset(r.value for r in COUNTER_ROLES)
_MEASURES = frozenset((Role.POWER_KW.value, Role.ENERGY_KWH.value))
# A scaled counter (raw * 0.1) is integral up to float rounding: 120 * 0.1 = 12.000000000000002.
_INTEGRAL_TOLERANCE = 1e-9


class Sample(NamedTuple):
    """One value of one signal of one device at one instant.

    `ts_ns` is UTC nanoseconds: the source timestamp when the protocol gives one, otherwise the
    time the gateway received the value. A `state` sample's value is a `State` name string.

    A NamedTuple because every value of every connector is one: it builds in a third of a frozen
    dataclass's time (tests/bench/bench_edge.py) and is just as immutable and hashable. A copy
    with other fields is `s._replace(...)`. Being a tuple, it also unpacks, and compares equal
    to a plain tuple of the same fields: no code here treats a tuple specially.
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
        """Strongest available identity claim; '' when the protocol gave nothing usable.
        Behind one aggregating OPC UA server (one certificate, many machines) the node root
        tells the machines apart, so it qualifies the claim."""
        root = self.details.get("node_root", "")
        for part in (self.certificate_sha256, self.serial_number, self.application_uri):
            if part:
                return f"{self.protocol}:{part}" + (f"#node_root={root}" if root else "")
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
    `width_bits` is a counter's register width when the connector knows it (a uint16 register:
    16): a counter value must be below 2**width_bits. The check for the role is prepared when
    the spec is made, so `states` must not be changed afterwards (make a new spec).
    """

    name: str
    address: Any = None
    scale: float = 1.0
    offset: float = 0.0
    states: Mapping[str, str] = field(default_factory=dict)
    width_bits: int | None = None

    # The checker for this spec's role, scale and width, chosen once (_choose_checker): `check`
    # runs per value on every connector, and the role's if-chain per call cost more than the
    # check. `_prep` is what the checker precomputed (a state map by int code, a counter's bound).
    _checker: Callable[["SignalSpec", Any], "Checked"] = field(init=False, repr=False, compare=False)
    _prep: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checker, prep = _choose_checker(self)
        object.__setattr__(self, "_checker", checker)
        object.__setattr__(self, "_prep", prep)

    def check(self, raw: Value) -> "Checked":
        """Raw protocol value -> (sample value, quality, problem), by the signal's role.

        * `state`: through the state map (or a State name); an unknown code is UNCERTAIN,
          carrying the raw code as text.
        * counters (`count_total`, `count_good`, `count_reject`): an integer >= 0 after scale
          and offset (12.0 is 12), below 2**width_bits when the width is known.
        * `power_kw`, `energy_kwh`: a finite number.
        * any other signal: kept as sent (numbers scaled), GOOD.

        A value that is not a reading of its role (text, a bool, NaN, a negative or fractional
        count...) is BAD with NO_VALUE, and `problem` says why: a PayloadError for the source
        to count and report (PayloadErrorReporter.report). `problem` is None otherwise.
        """
        return self._checker(self, raw)

    @property
    def judged(self) -> bool:
        """Whether `check` judges a value by the signal's role (`state`, the counters,
        `power_kw`, `energy_kwh`); any other signal is kept as sent, numbers scaled."""
        return self.name == Role.STATE.value or self.name in _COUNTERS or self.name in _MEASURES

    @property
    def passes_through(self) -> bool:
        """Whether `check(v)` is `(v, GOOD, None)` for every value (not judged, no scale or
        offset): a connector may then keep the value without calling `check`."""
        return not self.judged and self.scale == 1.0 and self.offset == 0.0

    def _check_general(self, raw: Value) -> "Checked":
        """`check` for any value: the definition the fast checkers must agree with (each one
        handles the common exact types and hands everything else here)."""
        if self.name == Role.STATE.value:
            return self._check_state(raw)
        if self.name in _COUNTERS or self.name in _MEASURES:
            return self._check_number(raw)
        if isinstance(raw, bool) or isinstance(raw, str):
            return Checked(raw, Quality.GOOD)
        return Checked(self._scaled(raw), Quality.GOOD)

    def convert(self, raw: Value) -> tuple[Value, Quality]:
        """Raw protocol value -> (sample value, quality); `check` without the problem.

        Kept for callers that do not count problems; a source should call `check` and report
        the problem, or a device sending garbage goes unnoticed."""
        value, quality, _ = self.check(raw)
        return value, quality

    def _check_state(self, raw: Value) -> "Checked":
        if self.states:
            mapped = self.states.get(_state_key(raw))
            if mapped is not None:
                return Checked(mapped, Quality.GOOD)
            return Checked(str(raw), Quality.UNCERTAIN,
                           PayloadError(f"state: code {raw!r} is not in the signal's state map"))
        try:
            return Checked(State.parse(raw).value, Quality.GOOD)
        except ValueError as err:
            return Checked(str(raw), Quality.UNCERTAIN, PayloadError(f"state: {err}"))

    def _check_number(self, raw: Value) -> "Checked":
        counter = self.name in _COUNTERS
        what = "a count (an integer >= 0)" if counter else "a finite number"
        # int and float first: the ABC check alone costs more than the rest of a check (profiled
        # at 11% of the gateway's CPU on MQTT telemetry, tests/bench/bench_mqtt.py).
        if type(raw) is not int and type(raw) is not float and (
                isinstance(raw, bool) or not isinstance(raw, numbers.Real)):
            return self._bad(f"{raw!r} is not {what}")
        try:
            value = self._scaled(raw)
            finite = math.isfinite(value)
        except OverflowError:       # an int beyond any float (10**400): no reading of a number
            finite = False
        if not finite:
            return self._bad(f"{raw!r} is not {what}")
        if not counter:
            return Checked(value, Quality.GOOD)
        count = round(value)
        if value < 0 or abs(value - count) > _INTEGRAL_TOLERANCE * max(1.0, abs(value)):
            return self._bad(f"{raw!r} is not {what}" + (f" (scaled: {value!r})" if value != raw else ""))
        if self.width_bits is not None and not 0 <= raw < 2**self.width_bits:
            return self._bad(f"{raw!r} does not fit the counter's {self.width_bits}-bit register")
        return Checked(int(count), Quality.GOOD)

    def _scaled(self, raw: Any) -> Any:
        if self.scale == 1.0 and self.offset == 0.0:
            return raw
        return raw * self.scale + self.offset

    def _bad(self, why: str) -> "Checked":
        return Checked(NO_VALUE, Quality.BAD, PayloadError(f"{self.name}: {why}"))


class Checked(NamedTuple):
    """What `SignalSpec.check` makes of a raw value; unpacks as (value, quality, problem)."""

    value: Value
    quality: Quality
    problem: PayloadError | None = None


def _state_key(raw: Value) -> str:
    # 3.0 from a float register and 3 from an int register are the same state code.
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


# ---- SignalSpec's fast checkers: (spec, raw) -> Checked, one chosen per spec by _choose_checker.
# Each takes the exact types a connector hands over (int, float, str) on the way the general
# check would pass them, and leaves anything else (bools, subclasses, NaN, out-of-range, text
# for a number) to SignalSpec._check_general, so results, problems and qualities are the same
# (tests/edge/test_signal_check_fastpath.py). tuple.__new__ skips Checked's Python-level
# __new__ (a third of a fast check).
_new = tuple.__new__
_GOOD = Quality.GOOD
# Ints inside this bound are floats without overflow, so the general path's isfinite holds.
_FAST_INT = 2**63
_STATE_NAMES = {s.value: s.value for s in State}


def _choose_checker(spec: SignalSpec) -> tuple[Callable[[SignalSpec, Any], Checked], Any]:
    unscaled = spec.scale == 1.0 and spec.offset == 0.0
    float_scaled = (type(spec.scale) is float and type(spec.offset) is float
                    and math.isfinite(spec.scale) and math.isfinite(spec.offset))
    if spec.name == Role.STATE.value:
        if spec.states:
            return _check_mapped_state, {int(k): v for k, v in spec.states.items() if _int_code(k)}
        return _check_named_state, None
    if spec.name in _COUNTERS:
        width = spec.width_bits
        if not unscaled or not (width is None or type(width) is int):
            return SignalSpec._check_general, None
        return _check_count, _FAST_INT if width is None or width >= 63 else 2**width
    if spec.name in _MEASURES:
        if unscaled:
            return _check_measure, None
        return (_check_scaled_measure, None) if float_scaled else (SignalSpec._check_general, None)
    if unscaled:
        return _check_kept, None
    return (_check_scaled_kept, None) if float_scaled else (SignalSpec._check_general, None)


def _int_code(key: Any) -> bool:
    """Whether `key` is the text str(int) gives (how the general check spells an int code)."""
    if type(key) is not str:
        return False
    try:
        return str(int(key)) == key
    except ValueError:
        return False


def _check_mapped_state(spec: SignalSpec, raw: Any) -> Checked:
    t = type(raw)
    mapped = spec._prep.get(raw) if t is int else spec.states.get(raw) if t is str else None
    if mapped is not None:
        return _new(Checked, (mapped, _GOOD, None))
    return spec._check_general(raw)


def _check_named_state(spec: SignalSpec, raw: Any) -> Checked:
    name = _STATE_NAMES.get(raw) if type(raw) is str else None
    if name is not None:
        return _new(Checked, (name, _GOOD, None))
    return spec._check_general(raw)


def _check_count(spec: SignalSpec, raw: Any) -> Checked:
    t = type(raw)
    if t is int:
        if 0 <= raw < spec._prep:
            return _new(Checked, (raw, _GOOD, None))
    elif t is float and 0.0 <= raw < spec._prep and raw.is_integer():
        return _new(Checked, (int(raw), _GOOD, None))
    return spec._check_general(raw)


def _check_measure(spec: SignalSpec, raw: Any) -> Checked:
    t = type(raw)
    # x - x is 0.0 exactly for a finite float, NaN for NaN and ±inf: isfinite without a call.
    if (t is float and raw - raw == 0.0) or (t is int and -_FAST_INT <= raw <= _FAST_INT):
        return _new(Checked, (raw, _GOOD, None))
    return spec._check_general(raw)


def _check_scaled_measure(spec: SignalSpec, raw: Any) -> Checked:
    t = type(raw)
    if t is float or (t is int and -_FAST_INT <= raw <= _FAST_INT):
        value = raw * spec.scale + spec.offset
        if value - value == 0.0:
            return _new(Checked, (value, _GOOD, None))
    return spec._check_general(raw)


def _check_kept(spec: SignalSpec, raw: Any) -> Checked:
    return _new(Checked, (raw, _GOOD, None))


def _check_scaled_kept(spec: SignalSpec, raw: Any) -> Checked:
    t = type(raw)
    if t is float or (t is int and -_FAST_INT <= raw <= _FAST_INT):
        return _new(Checked, (raw * spec.scale + spec.offset, _GOOD, None))
    return spec._check_general(raw)


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
