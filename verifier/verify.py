"""The verification run: read chunks, analyse, find non-distinct devices, count, decide.

    report = verify(reader, window=Window.last_days(90), voucher=Voucher(item="设备物联",
                    amount=100_000), config=VerifyConfig())

A device is counted only when it is active (verifier.activity) and no distinctness check
flags it (verifier.distinct). Memory stays bounded by the chunk size: per-device results and
small distinctness features are kept, cubes are dropped after each chunk.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from edge.errors import VerificationInputError

from .capture import CaptureSummary, capture_notes, read_capture
from .activity import ActivityConfig, DeviceActivity, analyse_activity, identity_events_in
from .cube import DeviceInfo, Flag
from .energy import DeviceEnergy, EnergyConfig, analyse_energy
from .oee import DeviceOee, OeeConfig, analyse_oee
from .localtime import UTC
from .prefetch import prefetched
from .provenance import SIMULATED, simulated_flags
from .policy import Terms, Verdict, Voucher, decide, resolve
from .reading import DEFAULT_CHUNK_DEVICES, Reader
from .states import dominant_state, state_seconds
from .window import Window

try:  # distinctness is built alongside; the run says so in its notes if it is missing
    from .distinct import DistinctConfig, concat_features, device_features, find_flags
    DISTINCT_AVAILABLE = True
except ImportError:  # pragma: no cover
    DISTINCT_AVAILABLE = False
    DistinctConfig = None  # type: ignore[assignment,misc]

Progress = Callable[[int, int], None]   # (devices done, devices total)


@dataclass(frozen=True)
class VerifyConfig:
    activity: ActivityConfig = ActivityConfig()
    oee: OeeConfig = OeeConfig()
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    distinct: Any = None                   # DistinctConfig; None = its defaults
    chunk_devices: int = DEFAULT_CHUNK_DEVICES
    # Timing regularity needs raw timestamps, kept only within the store's retention: the
    # last `raw_timing_span_s` of the window, at most `raw_timing_limit` per device.
    raw_timing_span_s: float = 1800.0
    raw_timing_limit: int = 5000
    # Simulated history (demo back-fills) is never evidence unless a caller says so explicitly.
    accept_simulated: bool = False
    # Days captured long after their source time are not active days unless accepted (demos).
    accept_backfill: bool = False

    def distinct_config(self) -> Any:
        if not DISTINCT_AVAILABLE:
            return None
        return self.distinct if self.distinct is not None else DistinctConfig()


@dataclass
class DeviceResult:
    info: DeviceInfo
    activity: DeviceActivity
    oee: DeviceOee
    energy: DeviceEnergy
    flags: list[Flag]

    @property
    def counted(self) -> bool:
        return not self.flags


@dataclass
class Report:
    window: Window
    terms: Terms
    verdict: Verdict
    devices: list[DeviceResult]
    config: VerifyConfig
    distinct_checked: bool
    sources: list[str]
    notes: list[str] = field(default_factory=list)
    analysed: Window | None = None     # the days read: the window clipped to the data
    capture: CaptureSummary | None = None   # capture time per device-day (verifier.capture)

    def __post_init__(self) -> None:
        if self.analysed is None:
            self.analysed = self.window

    @property
    def passed(self) -> bool:
        return self.verdict.verdict == "PASS"

    def to_dict(self, *, generated_at: dt.datetime | None = None) -> dict[str, Any]:
        from .report import report_to_dict
        return report_to_dict(self, generated_at=generated_at)

    def render_text(self) -> str:
        from .report import render_text
        return render_text(self)


def verify(reader: Reader, *, window: Window, voucher: Voucher,
           config: VerifyConfig | None = None, against: Sequence[Any] | None = None,
           progress: Progress | None = None) -> Report:
    """Verify a voucher claim against the devices the reader holds. `against` are
    `verifier.distinct.AgainstSet`s of earlier claims. Raises VerificationInputError for
    input that cannot be verified (no devices, unknown item...)."""
    config = config or VerifyConfig()
    terms = resolve(voucher)            # bad voucher input fails before any heavy reading
    if window.tz is None:               # review days are the programme's local days
        window = window.in_zone(terms.catalog.timezone)
    tz = window.zone
    devices = reader.devices()
    if not devices:
        raise VerificationInputError("no devices found in the given store(s)")
    if against and not DISTINCT_AVAILABLE:
        raise VerificationInputError("--against needs verifier.distinct, which is not installed")

    analysed = _first_day_with_samples(reader, _analysed_window(reader, window), config.chunk_devices)
    id_events = identity_events_in(reader.events("identity_changed"),
                                   window.start_ns, window.end_ns)
    planned = config.oee.calendar.planned_mask(analysed.days, tz)
    unread_planned_s = 60.0 * (
        config.oee.calendar.planned_minutes(window.days[:window.offset(analysed.start)], tz=tz)
        + config.oee.calendar.planned_minutes(window.days[window.offset(analysed.end) + 1:],
                                              tz=tz))
    periods = config.energy.tariff.period_index(analysed.days, tz)
    dconf = config.distinct_config()
    # The window may start before the plant's first data (installed mid-window): said once,
    # here, rather than as every device's "bunched at end".
    installed = analysed.start if analysed.start > window.start else None
    capture = read_capture(reader, devices, analysed, terms.catalog.max_backfilled_share,
                           config.accept_backfill)

    activity: list[DeviceActivity] = []
    oee: list[DeviceOee] = []
    energy: list[DeviceEnergy] = []
    blocks = []
    done = 0
    for cube in prefetched(reader.iter_cubes(analysed, config.chunk_devices)):
        dom = dominant_state(state_seconds(cube))
        activity += analyse_activity(cube, config.activity, identity_events=id_events,
                                     window=window,
                                     live=capture.live_mask(cube.device_ids, len(cube.days)),
                                     installed=installed)
        oee += analyse_oee(cube, config.oee, planned, dominant=dom,
                           unread_planned_s=unread_planned_s)
        energy += analyse_energy(cube, config.energy, periods=periods, dominant=dom)
        if dconf is not None:
            blocks.append(device_features(cube, dconf))
        done += len(cube.devices)
        if progress:
            progress(done, len(devices))

    notes = capture_notes(capture)
    if installed is not None:
        before = window.offset(installed)
        notes.append(f"data starts {installed}; the {before} day{'s' if before > 1 else ''} "
                     f"before {'are' if before > 1 else 'is'} before installation: they count "
                     "as days without data, and whether a device's active days are bunched at "
                     f"the window's end is judged from {installed} on")
    if analysed != window:
        notes.append(f"the stores hold data in this window only from {analysed.start} to "
                     f"{analysed.end}: its other days count as days without data and were not "
                     "read")
    distinct_flags: list[Flag] = []
    if dconf is not None:
        raw = _raw_timing(reader, devices, analysed, config)
        distinct_flags = find_flags(concat_features(blocks), devices, dconf,
                                    against=list(against) if against else None,
                                    raw_timing=raw or None)
        if not raw:
            notes.append("no raw samples retained for the window's end: timestamp regularity "
                         "was not checked")
    else:
        notes.append("verifier.distinct is not available: devices were NOT checked for "
                     "clones, replays or shared identities")

    simulated = simulated_flags(reader.events(SIMULATED), window.start_ns, window.end_ns)
    if simulated and config.accept_simulated:
        notes.append(f"SIMULATED DATA ACCEPTED: {len(simulated)} device(s) carry simulated "
                     "history in the window and were counted anyway (--accept-simulated); "
                     "this report is a demonstration, not evidence")
        simulated = []
    by_device: dict[str, list[Flag]] = {d.id: [] for d in devices}
    for f in distinct_flags + simulated:
        by_device.setdefault(f.device_id, []).append(f)
    results = []
    for info, act, o, e in zip(devices, activity, oee, energy):
        results.append(DeviceResult(info, act, o, e, act.flags + by_device[info.id]))
    verdict = decide(terms, sum(r.counted for r in results))
    sources = sorted({d.source for d in devices if d.source})
    return Report(window, terms, verdict, results, config, dconf is not None, sources, notes,
                  analysed=analysed, capture=capture)


def _analysed_window(reader: Reader, window: Window) -> Window:
    """The review window clipped to the days the stores hold: memory and time follow the data,
    whatever window is asked for. A window with no data at all is refused as bad input (a
    wrong year or the wrong store, most likely) rather than failed as a claim."""
    data_span = getattr(reader, "data_span", None)
    if data_span is None:   # a reader generating data on demand (benchmarks): any day may hold some
        return window
    span = data_span(window)
    if span is None:
        held = data_span()
        raise VerificationInputError(
            f"no rollups in the review window {window.start} – {window.end}: "
            + (f"the stores hold data from {held[0]} to {held[1]}" if held
               else "the stores hold no rollups at all"))
    clipped = window.clip(*span)
    assert clipped is not None   # the span lies inside the window
    return clipped


def _first_day_with_samples(reader: Reader, analysed: Window, chunk_devices: int) -> Window:
    """`analysed` starting at its first local day that holds a sample. Readers give data spans
    in UTC days, so on local days the span can start one day early: a plant whose first sample
    came at 05:52 Asia/Shanghai on the 22nd has UTC data on the 21st. That empty day made the
    installation date a day early and honest two-shift machines "bunched at end" in a one-week
    demo window whose first day with data was a Sunday off."""
    if (analysed.zone == UTC or analysed.n_days < 2
            or getattr(reader, "data_span", None) is None):
        return analysed
    for cube in reader.iter_cubes(Window(analysed.start, analysed.start, analysed.tz), chunk_devices):
        if (cube.field("samples") > 0).any():
            return analysed
    return Window(analysed.start + dt.timedelta(days=1), analysed.end, analysed.tz)


def _raw_timing(reader: Reader, devices: Sequence[DeviceInfo], window: Window,
                config: VerifyConfig) -> dict[str, Any]:
    end = window.end_ns
    start = max(window.start_ns, end - int(config.raw_timing_span_s * 1e9))
    out = {}
    for d in devices:
        ts = reader.raw_timestamps(d.id, start, end, config.raw_timing_limit)
        if len(ts):
            out[d.id] = ts
    return out
