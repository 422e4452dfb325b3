"""Machine kinds the virtual factory can build, with the figures a real nameplate would give.

A profile is the nominal machine; each simulated machine draws its own persona around it (see
`machine.Persona`) so that two machines of the same profile still behave differently.
"""
from __future__ import annotations

from dataclasses import dataclass

# Calendars a profile can run on (see calendar.py for what each means).
CALENDARS = ("continuous", "two_shift", "three_shift")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    label: str                 # human name used in machine names, e.g. "CNC mill"
    vendor: str
    model: str
    firmware: str
    serial_prefix: str         # 3-4 letters; serials must fit 16 ASCII characters (Modbus 100..107)
    machine_cycle_s: float     # nominal time of one machine cycle at rated speed
    parts_per_cycle: int       # e.g. cavities of a mould
    run_kw: float              # mean draw while producing
    idle_kw: float             # powered, waiting (heaters, hydraulics, spindle off)
    standby_kw: float          # stopped, faulted or off shift: controls only
    setup_kw: float
    reject_rate: float         # fraction of parts rejected
    mtbf_h: float              # mean running time between faults
    mttr_min: float            # median repair time
    idle_every_h: float        # mean running time between idle gaps (material, operator)
    idle_min: float            # median idle gap
    blocked_every_h: float     # mean running time between short blocked/starved stops
    changeover_every_h: float  # mean running time between changeovers (0: never)
    changeover_min: float      # median changeover duration
    calendar: str

    @property
    def ideal_cycle_s(self) -> float:
        """Ideal seconds per part: what OEE performance (count x ideal / run time) needs."""
        return self.machine_cycle_s / self.parts_per_cycle

    def __post_init__(self) -> None:
        if self.calendar not in CALENDARS:
            raise ValueError(f"profile {self.name}: calendar {self.calendar!r} not one of {CALENDARS}")
        if self.machine_cycle_s <= 0 or self.parts_per_cycle < 1:
            raise ValueError(f"profile {self.name}: machine_cycle_s must be > 0 and parts_per_cycle >= 1")
        if not 0 <= self.reject_rate < 1:
            raise ValueError(f"profile {self.name}: reject_rate must be in [0, 1)")


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="cnc_mill", label="CNC mill", vendor="DMG MORI", model="DMU 50", firmware="CELOS 5.2.1",
            serial_prefix="DMG", machine_cycle_s=95.0, parts_per_cycle=1,
            run_kw=18.0, idle_kw=6.5, standby_kw=1.2, setup_kw=4.0, reject_rate=0.015,
            mtbf_h=30.0, mttr_min=40.0, idle_every_h=5.0, idle_min=12.0, blocked_every_h=3.0,
            changeover_every_h=16.0, changeover_min=45.0, calendar="two_shift",
        ),
        Profile(
            name="cnc_lathe", label="CNC lathe", vendor="Haas", model="ST-20Y", firmware="100.21.000.1032",
            serial_prefix="HAS", machine_cycle_s=48.0, parts_per_cycle=1,
            run_kw=12.0, idle_kw=4.0, standby_kw=0.9, setup_kw=3.0, reject_rate=0.01,
            mtbf_h=40.0, mttr_min=30.0, idle_every_h=4.0, idle_min=10.0, blocked_every_h=2.5,
            changeover_every_h=12.0, changeover_min=35.0, calendar="two_shift",
        ),
        Profile(
            name="injection_moulding", label="Injection moulder", vendor="Haitian", model="MA2500/1000",
            firmware="KEBA i2-4.12", serial_prefix="HTN", machine_cycle_s=28.0, parts_per_cycle=4,
            run_kw=35.0, idle_kw=17.0, standby_kw=3.5, setup_kw=12.0, reject_rate=0.025,
            mtbf_h=60.0, mttr_min=55.0, idle_every_h=10.0, idle_min=15.0, blocked_every_h=6.0,
            changeover_every_h=48.0, changeover_min=90.0, calendar="three_shift",
        ),
        Profile(
            name="stamping_press", label="Stamping press", vendor="Yangli", model="JH21-160",
            firmware="YL-PLC 3.4.7", serial_prefix="YLP", machine_cycle_s=2.4, parts_per_cycle=1,
            run_kw=22.0, idle_kw=7.5, standby_kw=1.0, setup_kw=5.0, reject_rate=0.006,
            mtbf_h=25.0, mttr_min=35.0, idle_every_h=3.0, idle_min=8.0, blocked_every_h=1.5,
            changeover_every_h=8.0, changeover_min=30.0, calendar="two_shift",
        ),
        Profile(
            name="packaging", label="Packaging line", vendor="Syntegon", model="Pack 301",
            firmware="2.8.14", serial_prefix="SYN", machine_cycle_s=0.5, parts_per_cycle=1,
            run_kw=6.0, idle_kw=3.2, standby_kw=0.6, setup_kw=2.0, reject_rate=0.003,
            mtbf_h=20.0, mttr_min=20.0, idle_every_h=2.0, idle_min=6.0, blocked_every_h=0.8,
            changeover_every_h=24.0, changeover_min=25.0, calendar="continuous",
        ),
        Profile(
            name="air_compressor", label="Air compressor", vendor="Atlas Copco", model="GA 37 VSD+",
            firmware="Elektronikon MK5 1.9", serial_prefix="ATC", machine_cycle_s=900.0, parts_per_cycle=1,
            run_kw=37.0, idle_kw=9.0, standby_kw=0.8, setup_kw=0.8, reject_rate=0.0,
            mtbf_h=400.0, mttr_min=90.0, idle_every_h=1.5, idle_min=10.0, blocked_every_h=0.0,
            changeover_every_h=0.0, changeover_min=0.0, calendar="continuous",
        ),
        Profile(
            name="laser_cutter", label="Laser cutter", vendor="Han's Laser", model="G3015HF",
            firmware="HypCut 6.3", serial_prefix="HAN", machine_cycle_s=180.0, parts_per_cycle=6,
            run_kw=24.0, idle_kw=5.0, standby_kw=1.5, setup_kw=4.0, reject_rate=0.012,
            mtbf_h=45.0, mttr_min=45.0, idle_every_h=3.5, idle_min=14.0, blocked_every_h=4.0,
            changeover_every_h=10.0, changeover_min=20.0, calendar="three_shift",
        ),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown machine profile {name!r}; known: {', '.join(PROFILES)}") from None
