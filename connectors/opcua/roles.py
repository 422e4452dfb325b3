"""Suggested signal roles for the variables of one discovered OPC UA machine (pure, no I/O).

Three kinds of evidence, strongest first:
1. a companion specification's browse name: OPC 40501-1 machine tools
   (Production/Statistics/PartsProducedInLifetime, ProductionJob PartsCompleted / PartsGood,
   Monitoring/<Channel>/ChannelState) and EUROMAP 77 / 83 injection moulding
   (ActiveJobValues JobPartsCounter / JobGoodPartsCounter / JobBadPartsCounter);
2. the EngineeringUnits: kW is power, kWh an energy meter (W, Wh, MWh with a scale);
3. the browse name itself: State, PartCount, PowerKw, EnergyKwh, Alarm...

One variable per role: the best evidence wins, ties go to the first in browse order. A unit
that contradicts a name (`Power` in %) vetoes the name. A state variable gets no `states` map:
its codes are the machine's, and an unmapped code is stored UNCERTAIN with the code, so nothing
is guessed; the engineer adds the map.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass(frozen=True)
class Suggestion:
    role: str
    why: str
    scale: float = 1.0
    states: dict[str, str] = field(default_factory=dict)


class Variable(Protocol):
    path: tuple[str, ...]
    unit: str
    data_type: str
    collectable: bool
    suggestion: Suggestion | None


_COMPANION = 3
_UNIT = 2
_NAME = 1

# (browse name, a browse name that must be on the path above it or "", role, spec)
_COMPANION_NAMES: tuple[tuple[str, str, str, str], ...] = (
    ("PartsProducedInLifetime", "Production", "count_total", "OPC 40501 Production/Statistics"),
    ("PartsCompleted", "", "count_total", "OPC 40501 ProductionJob"),
    ("PartsGood", "", "count_good", "OPC 40501 ProductionJob"),
    ("ChannelState", "Monitoring", "state", "OPC 40501 ChannelMonitoring; map its codes with states:"),
    ("JobPartsCounter", "", "count_total", "EUROMAP 77/83 ActiveJobValues"),
    ("JobGoodPartsCounter", "", "count_good", "EUROMAP 77/83 ActiveJobValues"),
    ("JobBadPartsCounter", "", "count_reject", "EUROMAP 77/83 ActiveJobValues"),
)

# unit (as EUInformation.DisplayName shows it) -> (role, scale to the role's unit)
_UNITS: dict[str, tuple[str, float]] = {
    "kw": ("power_kw", 1.0), "w": ("power_kw", 0.001), "mw": ("power_kw", 1000.0),
    "kwh": ("energy_kwh", 1.0), "wh": ("energy_kwh", 0.001), "mwh": ("energy_kwh", 1000.0),
}

# normalised browse name (lower case, letters and digits only) -> role
_NAMES: dict[str, str] = {
    **dict.fromkeys(("state", "machinestate", "machinestatus", "runstate", "operatingstate", "status"), "state"),
    **dict.fromkeys(("counttotal", "totalcount", "partcount", "partscount", "partcounter", "partscounter",
                     "partstotal", "totalparts", "partsproduced", "piececount", "cyclecounter"), "count_total"),
    **dict.fromkeys(("countgood", "goodcount", "goodparts", "partsgood", "goodpartcount"), "count_good"),
    **dict.fromkeys(("countreject", "rejectcount", "rejects", "rejectedparts", "scrap", "scrapcount",
                     "badparts", "partsbad", "badcount", "countbad"), "count_reject"),
    **dict.fromkeys(("powerkw", "power", "activepower", "totalactivepower", "powerconsumption"), "power_kw"),
    **dict.fromkeys(("energykwh", "energy", "activeenergy", "totalenergy", "energyconsumption",
                     "energymeter"), "energy_kwh"),
    **dict.fromkeys(("alarm", "alarmactive", "fault", "faultactive"), "alarm"),
    **dict.fromkeys(("reasoncode", "stopreason", "downtimereason"), "reason_code"),
}
# Roles whose value is a number of a known unit: a name match with another unit is vetoed.
_UNIT_ROLES = {"power_kw", "energy_kwh"}
_NUMERIC = re.compile(r"^(U?Int\d+|S?Byte|Float|Double|Number|U?Integer)$")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _candidates(v: Variable) -> list[tuple[int, Suggestion]]:
    name, above = v.path[-1], v.path[:-1]
    out: list[tuple[int, Suggestion]] = []
    for browse, context, role, spec in _COMPANION_NAMES:
        if name == browse and (not context or context in above):
            out.append((_COMPANION, Suggestion(role, spec)))
    unit = _UNITS.get(v.unit.strip().lower())
    numeric = bool(_NUMERIC.match(v.data_type))
    if unit is not None and numeric:
        out.append((_UNIT, Suggestion(unit[0], f"unit {v.unit}", unit[1])))
    role = _NAMES.get(_norm(name))
    if role is not None and not (role in _UNIT_ROLES and v.unit and unit is None):
        if role in _UNIT_ROLES and unit is not None and unit[0] == role:
            pass  # the unit's suggestion, with its scale, already covers it
        elif role == "alarm" and v.data_type != "Boolean":
            pass  # an alarm number or text is an alarm code, not the on/off the role means
        elif role in ("state", "reason_code", "alarm") or numeric:
            why = "name; map its codes with states:" if role == "state" else "name"
            out.append((_NAME, Suggestion(role, why)))
    return out


def suggest_roles(variables: Sequence[Variable]) -> None:
    """Sets `suggestion` on the variables that best fill each role (collectable ones only)."""
    best: dict[str, tuple[int, int, Suggestion]] = {}
    for i, v in enumerate(variables):
        v.suggestion = None
        if not v.collectable:
            continue
        for rank, s in _candidates(v):
            held = best.get(s.role)
            if held is None or rank > held[0]:
                best[s.role] = (rank, i, s)
    taken: set[int] = set()
    for role, (rank, i, s) in sorted(best.items(), key=lambda kv: -kv[1][0]):
        if i in taken:
            continue  # one role per variable: the strongest evidence for it decided
        taken.add(i)
        variables[i].suggestion = s
