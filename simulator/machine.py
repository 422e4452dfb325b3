"""A pure, deterministic machine model: same spec and start time, same behaviour, on any query order.

The model is a timeline of segments (one state and reason each). Segments are generated lazily in
time order from the machine's own RNG stream, so `advance`, `values` and `history` only read them:
`history(a, b)` gives the same readings whether it is asked before or after `advance`.
Within a segment everything is closed-form (parts from the effective cycle time, energy from the
segment's mean power), which is what makes 30 machines x 14 days of history take about a second.

What makes two machines of one profile different: a `Persona` drawn from the seed (speed,
reliability, scrap, power scaling, meter and counter start values), per-machine calendar jitter,
and an independent RNG stream for every event and duration.
"""
from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from typing import Iterator

from .calendar import iter_windows
from .profiles import PROFILES, Profile, get_profile

STATE_NAMES: dict[int, str] = {
    1: "running", 2: "idle", 3: "stopped", 4: "fault", 5: "setup", 6: "planned_stop",
}
STATE_CODES: dict[str, int] = {name: code for code, name in STATE_NAMES.items()}
RUNNING, IDLE, STOPPED, FAULT, SETUP, PLANNED_STOP = 1, 2, 3, 4, 5, 6

# Reason codes by state; 0 only while running.
REASONS: dict[int, dict[int, str]] = {
    RUNNING: {0: "running"},
    IDLE: {11: "waiting material", 12: "no operator"},
    STOPPED: {21: "blocked", 22: "starved"},
    FAULT: {31: "mechanical", 32: "electrical", 33: "tooling"},
    SETUP: {41: "changeover"},
    PLANNED_STOP: {51: "break", 52: "planned maintenance", 53: "no shift"},
}
PROTOCOLS = ("opcua", "modbus", "mqtt")
COUNTER_MODULO = 65536
_M64 = (1 << 64) - 1


@dataclass(frozen=True)
class MachineSpec:
    id: str
    name: str
    protocol: str  # "opcua" | "modbus" | "mqtt"
    line: str
    serial: str
    profile: str
    seed: int

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"machine {self.id}: protocol {self.protocol!r} not one of {PROTOCOLS}")
        if not self.serial or len(self.serial) > 16 or not self.serial.isascii():
            raise ValueError(f"machine {self.id}: serial {self.serial!r} must be 1..16 ASCII characters")
        get_profile(self.profile)


@dataclass(frozen=True, slots=True)
class Persona:
    """How this one machine differs from its profile's nominal figures."""

    speed: float           # share of ideal speed reached while running (0.8..0.97)
    cycle_cv: float        # segment-to-segment variation of cycle time
    microstop: float       # share of running time lost to micro-stops too short to change state
    fault_scale: float     # multiplies MTBF
    repair_scale: float    # multiplies MTTR
    scrap_scale: float     # multiplies the reject rate
    power_scale: float
    noise_key: int         # key of the per-timestamp power noise

    @classmethod
    def draw(cls, rng: random.Random) -> "Persona":
        return cls(
            speed=rng.uniform(0.80, 0.97),
            cycle_cv=rng.uniform(0.01, 0.05),
            microstop=rng.uniform(0.01, 0.06),
            fault_scale=rng.lognormvariate(0.0, 0.4),
            repair_scale=rng.lognormvariate(0.0, 0.3),
            scrap_scale=rng.lognormvariate(0.0, 0.35),
            power_scale=rng.uniform(0.88, 1.12),
            noise_key=rng.getrandbits(62),
        )


@dataclass(slots=True)
class Segment:
    """One stretch of constant state and reason. Counts are raw (not wrapped) since the last reset."""

    start: float
    end: float
    state: int
    reason: int
    cycle_s: float        # effective seconds per cycle while running, else 0
    parts_per_cycle: int
    reject_rate: float
    reject_phase: float   # in [0, 1): where the first reject falls
    power_kw: float       # mean draw in this segment
    noise_kw: float       # half-width of the per-reading noise
    total0: int
    reject0: int
    energy0: float

    def counts_at(self, t: float) -> tuple[int, int]:
        if self.cycle_s <= 0.0:
            return self.total0, self.reject0
        n = int((t - self.start) / self.cycle_s) * self.parts_per_cycle
        return self.total0 + n, self.reject0 + int(n * self.reject_rate + self.reject_phase)

    def energy_at(self, t: float) -> float:
        return self.energy0 + self.power_kw * (t - self.start) / 3600.0


def _noise(key: int, t: float) -> float:
    """Deterministic noise in [-1, 1) for one machine at one instant (splitmix64 of the ms)."""
    x = ((key ^ int(t * 1000.0)) * 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    x ^= x >> 31
    return (x >> 11) * (2.0 / 9007199254740992.0) - 1.0


class Machine:
    """One simulated machine. `advance` moves it forward; `values` reads the present."""

    def __init__(self, spec: MachineSpec, start_ts: float, *, retain_s: float = 40 * 86400) -> None:
        self.spec = spec
        self.profile: Profile = get_profile(spec.profile)
        self.start_ts = float(start_ts)
        self._retain_s = retain_s
        # Mixing the seed keeps machine seeds 1, 2, 3... far apart in the Mersenne state space.
        self._rng = random.Random(f"shangyun-machine-{spec.seed}")
        self.persona = Persona.draw(self._rng)
        self._windows = iter_windows(self.profile.calendar, spec.seed, self.start_ts)
        self._window = next(self._windows)
        self._segments: list[Segment] = []
        self._starts: list[float] = []
        self._cursor = self.start_ts
        self._next: tuple[int, int, float] | None = None  # state, reason, duration after this run
        self._reset_pending = False
        self._total = self._rng.randrange(0, 60000)
        self._reject = int(self._total * self.profile.reject_rate)
        self._energy = round(self._rng.uniform(2_000.0, 90_000.0), 2)
        self._now = self.start_ts
        self._now_index = 0
        self._extend(self.start_ts)

    # -- public API --------------------------------------------------------------------------

    def advance(self, t: float) -> None:
        """Move the model forward to time `t` (epoch seconds); time never goes back."""
        if t < self._now:
            raise ValueError(f"machine {self.spec.id}: advance({t}) is before the present ({self._now})")
        self._extend(t)
        self._now = t
        while self._segments[self._now_index].end <= t:
            self._now_index += 1
        self._prune(t)

    @property
    def now(self) -> float:
        return self._now

    def values(self) -> dict:
        """Signal values at the present time (see ADDRESSES.md for their meaning)."""
        return self._values(self._segments[self._now_index], self._now)

    def history(
        self, start: float, end: float, report_interval_s: float = 60
    ) -> Iterator[tuple[float, dict]]:
        """Readings (ts, values) over [start, end): one at `start`, one at every state change and
        one at every multiple of `report_interval_s` (epoch aligned)."""
        if report_interval_s <= 0:
            raise ValueError("report_interval_s must be > 0")
        if start < self.start_ts:
            raise ValueError(f"history starts at {start}, before the machine model ({self.start_ts})")
        if self._segments[0].start > start:
            raise ValueError(f"history from {start} is older than the retained {self._retain_s} s")
        if end <= start:
            return
        self._extend(end)
        i = bisect.bisect_right(self._starts, start) - 1
        values = self._values
        while i < len(self._segments):
            seg = self._segments[i]
            if seg.start >= end:
                break
            t = max(seg.start, start)
            yield t, values(seg, t)
            stop = min(seg.end, end)
            tick = (math.floor(t / report_interval_s) + 1) * report_interval_s
            while tick < stop:
                yield tick, values(seg, tick)
                tick += report_interval_s
            i += 1

    def state_seconds(self, start: float, end: float) -> dict[str, float]:
        """Ground truth: seconds spent in each state over [start, end)."""
        self._extend(end)
        out = {name: 0.0 for name in STATE_NAMES.values()}
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        for seg in self._segments[i:]:
            if seg.start >= end:
                break
            out[STATE_NAMES[seg.state]] += max(0.0, min(seg.end, end) - max(seg.start, start))
        return out

    # -- readings ---------------------------------------------------------------------------

    def _values(self, seg: Segment, t: float) -> dict:
        total, reject = seg.counts_at(t)
        power = seg.power_kw + seg.noise_kw * _noise(self.persona.noise_key, t)
        return {
            "state": STATE_NAMES[seg.state],
            "state_code": seg.state,
            "reason_code": seg.reason,
            "count_total": total % COUNTER_MODULO,
            "count_good": (total - reject) % COUNTER_MODULO,
            "count_reject": reject % COUNTER_MODULO,
            "power_kw": round(max(power, 0.0), 3),
            "energy_kwh": round(seg.energy_at(t), 3),
            "alarm": seg.state == FAULT,
        }

    # -- timeline generation ----------------------------------------------------------------

    def _extend(self, until: float) -> None:
        while self._cursor <= until:
            self._emit_next()

    def _emit_next(self) -> None:
        c, w = self._cursor, self._window
        if c >= w.start:
            self._append(PLANNED_STOP, w.reason, w.end)
            self._window = next(self._windows)
            self._next = None  # whatever was due is overtaken by the planned stop
            return
        if self._next is None:
            duration, follow = self._draw_run()
            self._append(RUNNING, 0, min(c + duration, w.start))
            self._next = follow if c + duration < w.start else None
            return
        state, reason, duration = self._next
        self._next = None
        self._append(state, reason, min(c + duration, w.start))

    def _draw_run(self) -> tuple[float, tuple[int, int, float]]:
        """Running time until the next stop, and that stop: competing exponential risks."""
        p, rng, persona = self.profile, self._rng, self.persona
        risks = [
            (p.mtbf_h * persona.fault_scale, self._draw_fault),
            (p.idle_every_h, self._draw_idle),
            (p.blocked_every_h, self._draw_blocked),
            (p.changeover_every_h, self._draw_setup),
        ]
        best_s, best_draw = math.inf, self._draw_idle
        for mean_h, draw in risks:
            if mean_h > 0:
                s = rng.expovariate(1.0 / (mean_h * 3600.0))
                if s < best_s:
                    best_s, best_draw = s, draw
        return max(best_s, 30.0), best_draw()

    def _lognormal_s(self, median_min: float, sigma: float, lo_min: float, hi_min: float) -> float:
        minutes = median_min * self._rng.lognormvariate(0.0, sigma)
        return min(max(minutes, lo_min), hi_min) * 60.0

    def _draw_fault(self) -> tuple[int, int, float]:
        reason = self._rng.choices((31, 32, 33), weights=(5, 3, 2))[0]
        median = self.profile.mttr_min * self.persona.repair_scale
        return FAULT, reason, self._lognormal_s(median, 0.7, 2.0, 8 * 60.0)

    def _draw_idle(self) -> tuple[int, int, float]:
        reason = self._rng.choice((11, 12))
        return IDLE, reason, self._lognormal_s(self.profile.idle_min, 0.6, 0.5, 3 * 60.0)

    def _draw_blocked(self) -> tuple[int, int, float]:
        reason = self._rng.choice((21, 22))
        return STOPPED, reason, self._lognormal_s(2.5, 0.5, 0.3, 30.0)

    def _draw_setup(self) -> tuple[int, int, float]:
        return SETUP, 41, self._lognormal_s(self.profile.changeover_min, 0.3, 5.0, 6 * 60.0)

    def _append(self, state: int, reason: int, end: float) -> None:
        p, rng, persona = self.profile, self._rng, self.persona
        start = self._cursor
        if state in (FAULT, PLANNED_STOP):
            self._reset_pending = True
        elif self._reset_pending:
            # The controller reboots after a fault or a planned stop: its part counters restart.
            self._total = self._reject = 0
            self._reset_pending = False
        cycle_s = 0.0
        reject_rate = 0.0
        if state == RUNNING:
            jitter = max(1.0 + rng.gauss(0.0, persona.cycle_cv), 0.9)
            slowdown = (1.0 + persona.microstop * rng.uniform(0.5, 1.5)) / persona.speed
            cycle_s = max(p.machine_cycle_s * jitter * slowdown, p.machine_cycle_s)
            reject_rate = min(p.reject_rate * persona.scrap_scale * rng.lognormvariate(0.0, 0.3), 0.5)
            base_kw = p.run_kw
        elif state == IDLE:
            base_kw = p.idle_kw
        elif state == SETUP:
            base_kw = p.setup_kw
        elif state == PLANNED_STOP and reason == 53:
            base_kw = p.standby_kw * 0.6  # off shift: only the controls and the meter
        else:
            base_kw = p.standby_kw
        power_kw = base_kw * persona.power_scale * rng.uniform(0.93, 1.07)
        seg = Segment(
            start=start, end=end, state=state, reason=reason, cycle_s=cycle_s,
            parts_per_cycle=p.parts_per_cycle, reject_rate=reject_rate,
            reject_phase=rng.random(), power_kw=power_kw,
            noise_kw=power_kw * (0.06 if state == RUNNING else 0.03),
            total0=self._total, reject0=self._reject, energy0=self._energy,
        )
        self._segments.append(seg)
        self._starts.append(start)
        self._total, self._reject = seg.counts_at(end)
        self._energy = seg.energy_at(end)
        self._cursor = end

    def _prune(self, t: float) -> None:
        # Keep long runs bounded in memory; history older than retain_s is given up.
        keep = t - self._retain_s
        n = bisect.bisect_left(self._starts, keep) - 1
        if n > 1000:
            del self._segments[:n]
            del self._starts[:n]
            self._now_index -= n


def make_specs(n: int, seed: int = 1) -> list[MachineSpec]:
    """A factory mix of `n` machines: protocols round-robin opcua/modbus/mqtt, lines of up to
    eight machines (L1..Lk), profiles mixed, unique serials, ids m01, m02, ..."""
    if n < 1:
        raise ValueError(f"need at least one machine, got {n}")
    rng = random.Random(f"shangyun-factory-{seed}")
    names = list(PROFILES)
    rng.shuffle(names)
    width = max(2, len(str(n)))
    lines = max(1, math.ceil(n / 8))
    serials: set[str] = set()
    specs = []
    for i in range(n):
        profile = PROFILES[names[i % len(names)]]
        while True:
            serial = f"{profile.serial_prefix}{rng.randint(18, 25)}{rng.getrandbits(28):07X}"
            if serial not in serials:
                serials.add(serial)
                break
        specs.append(
            MachineSpec(
                id=f"m{i + 1:0{width}d}",
                name=f"{profile.label} {i + 1:0{width}d}",
                protocol=PROTOCOLS[i % len(PROTOCOLS)],
                line=f"L{i * lines // n + 1}",
                serial=serial,
                profile=profile.name,
                seed=rng.getrandbits(48),
            )
        )
    return specs
