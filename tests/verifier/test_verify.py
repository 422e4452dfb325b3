"""The verification run end to end over a MemoryReader, and the JSON report's stability."""
import dataclasses
import datetime as dt
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from edge.errors import VerificationInputError
from edge.model import IdentityEvidence
from edge.rollup_layout import F
from verifier.policy import Voucher
from verifier.reading import DEFAULT_CHUNK_DEVICES, EventRecord, MemoryReader
from verifier.report import SCHEMA
from verifier.verify import VerifyConfig, verify
from verifier.window import Window

from .cubes import START, device, empty_cube, set_state, minutes

GOLDEN = Path(__file__).parent / "golden" / "verify_small.json"
N_DAYS = 8
# The hand-made rollups are UTC days and every figure here was worked out on them: these tests
# review UTC days (local review days have tests of their own, test_local_days.py).
WINDOW = Window(START, START + dt.timedelta(days=N_DAYS - 1), "UTC")


def small_factory():
    """Three honest machines with their own rhythm, one only at the end, one posing with
    another's serial number, and an identity change."""
    devs = [device(i, ideal_cycle_s=30.0, line="L1" if i < 3 else "L2") for i in range(5)]
    devs[4] = device(4, ideal_cycle_s=30.0, line="L2",
                     identity=IdentityEvidence(protocol="opcua", serial_number="SN-m000"))
    devs.append(device(5, ideal_cycle_s=30.0, line="L2"))
    cube = empty_cube(len(devs), N_DAYS, devices=devs)
    rng = np.random.default_rng(7)
    for d in range(len(devs)):
        days = range(N_DAYS - 2, N_DAYS) if d == 3 else range(N_DAYS)
        for k in days:
            start = 6 + d % 3 + round(float(rng.random()), 2)  # own rhythm per machine
            set_state(cube, d, k, minutes(0, start), "idle",
                      power_mean_kw=1.0 + 0.1 * d, energy_kwh=(1.0 + 0.1 * d) / 60)
            set_state(cube, d, k, minutes(start, 22), "running")
            set_state(cube, d, k, minutes(22, 22.5), "fault")
            set_state(cube, d, k, minutes(22.5, 24), "planned_stop")
            run = slice(int(start * 60), 22 * 60)
            n = run.stop - run.start
            counts = rng.integers(1, 4, n).astype(np.float32)
            cube.data[d, k, F["count_total"], run] = counts
            cube.data[d, k, F["count_good"], run] = counts - (rng.random(n) < 0.05)
            power = (5.0 + d + rng.normal(0, 0.4, n)).astype(np.float32)
            cube.data[d, k, F["power_mean_kw"], run] = power
            cube.data[d, k, F["energy_kwh"], run] = power / 60
    events = [EventRecord(WINDOW.start_ns + 3 * 86_400 * 10**9, "m005", "identity_changed",
                          {"from": "opcua:SN-old", "to": "opcua:SN-m005"})]
    return MemoryReader(devs, cube, events=events)


def run_small(amount=6_000):
    return verify(small_factory(), window=WINDOW,
                  voucher=Voucher(item="设备物联", amount=amount), config=VerifyConfig())


def reasons(report):
    return {r.info.id: sorted({f.reason for f in r.flags}) for r in report.devices}


def test_counting_needs_active_and_unflagged():
    report = run_small()
    got = reasons(report)
    assert got["m000"] == [] and got["m001"] == [] and got["m002"] == []
    assert "bunched_at_end" in got["m003"] and "too_few_days" in got["m003"]
    assert got["m005"] == ["identity_changed"]
    # (This used to pass whenever distinctness was not checked at all.)
    assert report.distinct_checked and "shared_identity" in got["m004"]
    assert report.verdict.counted_devices == sum(not v for v in got.values())


def test_verdict_pass_and_fail_follow_the_count():
    assert run_small(amount=4_500).verdict.verdict == "PASS"    # 3 needed, 3 counted
    fail = run_small(amount=6_000)                                # 4 needed
    assert fail.verdict.verdict == "FAIL"
    assert fail.verdict.supported_amount_fen == 3 * 150_000
    assert [p.code for p in fail.verdict.reasons] == ["too_few_devices"]


def test_chunking_does_not_change_results():
    whole = run_small().to_dict()
    chunked = verify(small_factory(), window=WINDOW, voucher=Voucher(item="设备物联", amount=6_000),
                     config=VerifyConfig(chunk_devices=2)).to_dict()
    assert chunked == whole


def test_report_json_is_stable(request):
    doc = run_small().to_dict()
    doc["thresholds"]["distinct"] = "(owned by verifier.distinct; not part of this golden file)"
    text = json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True)
    if os.environ.get("SHANGYUN_UPDATE_GOLDEN"):
        GOLDEN.write_text(text + "\n", encoding="utf-8")
    assert doc["schema"] == SCHEMA == "shangyun.verify/1"
    assert json.loads(GOLDEN.read_text(encoding="utf-8")) == json.loads(text), \
        "report JSON changed: review, then SHANGYUN_UPDATE_GOLDEN=1 to accept"


def test_text_report_shows_verdict_arithmetic_thresholds_and_table():
    text = run_small().render_text()
    assert "VERDICT: FAIL" in text
    assert "required devices = ⌈6,000.00 ÷ 1,500.00⌉ = 4" in text
    assert "min_data_days = 5" in text
    assert "m003" in text and "bunched_at_end" in text


def test_text_report_gives_each_devices_oee_components():
    r = small_factory()
    # m000 without an ideal cycle time: performance, hence OEE, cannot be computed.
    devs = [dataclasses.replace(d, ideal_cycle_s=None) if d.id == "m000" else d
            for d in r.devices()]
    report = verify(MemoryReader(devs, r._cube, events=r.events()), window=WINDOW,
                    voucher=Voucher(item="设备物联", amount=6_000))
    lines = report.render_text().splitlines()
    heads = [i for i, x in enumerate(lines) if x.startswith("OEE per device")]
    assert len(heads) == 1, "no per-device OEE section in the text report"
    head = heads[0]
    assert lines[head + 1].split() == ["id", "availability", "performance", "quality", "OEE",
                                       "run", "h", "planned", "busy", "h", "unknown", "h"]
    rows = {x.split()[0]: x.split() for x in lines[head + 2:head + 2 + len(devs)]}
    assert set(rows) == {d.id for d in devs}
    for res in report.devices:
        t = res.oee.totals
        pct = lambda x: "—" if x is None else f"{x:.1%}"  # noqa: E731
        assert rows[res.info.id] == [res.info.id, pct(t.availability), pct(t.performance),
                                     pct(t.quality), pct(t.oee), f"{t.run_s / 3600:.1f}",
                                     f"{t.busy_s / 3600:.1f}", f"{t.unknown_s / 3600:.1f}"]
    assert rows["m000"][2] == rows["m000"][4] == "—"
    assert rows["m001"][4] != "—" and float(rows["m001"][4].rstrip("%")) > 0
    assert float(rows["m003"][7]) == pytest.approx(6 * 24)   # no data on 6 of its 8 days


def test_text_report_says_how_many_minutes_had_no_plausible_energy():
    r = small_factory()
    r._cube.data[1, 2, F["energy_kwh"], 600:605] = np.nan
    r._cube.data[2, 3, F["energy_kwh"], 700] = 1e9
    report = verify(r, window=WINDOW, voucher=Voucher(item="设备物联", amount=6_000))
    assert "Energy: 6 device-minutes carried no plausible energy" in report.render_text()
    assert report.to_dict()["energy"]["plant"]["broken_minutes"] == 6


def test_no_devices_is_bad_input():
    cube = empty_cube(0, 1)
    with pytest.raises(VerificationInputError, match="no devices"):
        verify(MemoryReader([], cube), window=Window(START, START),
               voucher=Voucher(item="设备物联", amount=1500))


def test_window_without_data_is_bad_input():
    # A window holding no data at all is most likely a wrong year or the wrong store: refused
    # with the span the stores do hold, not failed as a claim.
    far = Window(START + dt.timedelta(days=100), START + dt.timedelta(days=109))
    with pytest.raises(VerificationInputError, match="hold data from 2024-03-01 to 2024-03-08"):
        verify(small_factory(), window=far, voucher=Voucher(item="设备物联", amount=1500))


class DataDaysOnly(MemoryReader):
    """Refuses, before allocating anything, to build cubes over more days than it holds."""

    def iter_cubes(self, window, chunk_devices=DEFAULT_CHUNK_DEVICES):
        assert window.n_days <= N_DAYS, f"asked for {window.n_days} days, holds {N_DAYS}"
        return super().iter_cubes(window, chunk_devices)


def data_days_only():
    r = small_factory()
    return DataDaysOnly(r.devices(), r._cube, events=r.events())


def test_window_reaching_a_century_past_the_data_reads_only_the_data_days():
    long = Window(START - dt.timedelta(days=36_500), WINDOW.end + dt.timedelta(days=3650), "UTC")
    report = verify(data_days_only(), window=long, voucher=Voucher(item="设备物联", amount=1500))
    doc = report.to_dict()
    assert doc["window"]["days"] == long.n_days
    assert doc["window"]["analysed"] == {"from": "2024-03-01", "to": "2024-03-08", "days": 8}
    # The rules still apply to the whole window asked for: 8 days of data are far too few.
    assert report.verdict.verdict == "FAIL" and report.verdict.counted_devices == 0
    assert all("too_few_days" in reasons(report)[d] for d in reasons(report))
    assert doc["thresholds"]["activity"]["min_data_days"] == math.ceil(0.6 * long.n_days)
    plant = doc["oee"]["plant"]
    assert plant["planned_h"] == pytest.approx(6 * 24 * long.n_days)
    assert plant["run_h"] == pytest.approx(run_small().to_dict()["oee"]["plant"]["run_h"])
    assert len(doc["output_per_hour"]["values"]) == 8 * 24
    assert any("not read" in n for n in report.notes)


class NoSpan:
    """A reader that cannot tell which days it holds (the benchmark's generator)."""

    def __init__(self, inner):
        self.devices, self.iter_cubes = inner.devices, inner.iter_cubes
        self.events, self.raw_timestamps = inner.events, inner.raw_timestamps


def test_reader_without_data_span_is_read_over_the_whole_window():
    w = Window(START, WINDOW.end + dt.timedelta(days=2), "UTC")
    report = verify(NoSpan(small_factory()), window=w, voucher=Voucher(item="设备物联", amount=1500))
    assert report.analysed == w and report.to_dict()["window"]["analysed"]["days"] == 10


@pytest.mark.parametrize("before,after", [(0, 8), (8, 0)])
def test_activity_rules_use_the_whole_window_when_only_part_is_read(before, after):
    # 8 days of data in a 16-day window: too few days either way. When the data sits in the
    # window's second half the whole plant started then: said once at plant level, not as every
    # device's bunched_at_end (this test expected bunched_at_end before issue 9).
    w = Window(START - dt.timedelta(days=before), WINDOW.end + dt.timedelta(days=after), "UTC")
    report = verify(data_days_only(), window=w, voucher=Voucher(item="设备物联", amount=1500))
    got = reasons(report)
    assert all("too_few_days" in r for r in got.values())
    # m003 is the one machine that only ran at the end of the plant's 8 days.
    assert [d for d, r in got.items() if "bunched_at_end" in r] == ([] if after else ["m003"])
    installed = [n for n in report.notes if "before installation" in n]
    assert installed == ([f"data starts {START}; the 8 days before are before installation: "
                          "they count as days without data, and whether a device's active days "
                          f"are bunched at the window's end is judged from {START} on"]
                         if before else [])


def test_a_device_installed_after_the_rest_is_still_bunched_at_the_end():
    w = Window(START - dt.timedelta(days=8), WINDOW.end, "UTC")
    report = verify(data_days_only(), window=w, voucher=Voucher(item="设备物联", amount=1500))
    # m003 has data on the last 2 of the plant's 8 days only.
    assert "bunched_at_end" in reasons(report)["m003"]
    assert sum("before installation" in n for n in report.notes) == 1
