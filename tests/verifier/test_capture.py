"""Capture time as evidence: backfilled device-days are not active days unless accepted."""
from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest

from edge.model import DeviceSpec, Sample, SignalSpec
from edge.rollup_layout import F, empty_day
from edge.store import Store
from verifier.policy import Voucher
from verifier.reading import CaptureHour, MemoryReader, StoreReader
from verifier.verify import VerifyConfig, verify
from verifier.window import Window

from .cubes import START, empty_cube, run_all_day

DAYS = 30
WINDOW = Window(START, START + dt.timedelta(days=DAYS - 1), "UTC")
VOUCHER = Voucher(item="设备物联", amount=4 * 1500)
NS_H = 3_600 * 10**9
CAPTURED = int(dt.datetime(2026, 11, 30, 14, 2, tzinfo=dt.timezone.utc).timestamp()) * 10**9
SAMPLES_PER_HOUR = 60


def _hours(days: range, backfilled_share: float, captured_ns: int | None = None
           ) -> dict[int, CaptureHour]:
    """Capture records for whole UTC days of the test window."""
    out = {}
    for k in days:
        first_hour = (WINDOW.start_ns // NS_H) + 24 * k
        for h in range(first_hour, first_hour + 24):
            at = captured_ns if captured_ns is not None else h * NS_H + 5 * 10**9
            out[h] = CaptureHour(SAMPLES_PER_HOUR, round(SAMPLES_PER_HOUR * backfilled_share),
                                 at, at + 38 * 60 * 10**9 * (h - first_hour) // 23)
    return out


def factory(capture: dict | None) -> MemoryReader:
    """Four machines running every day; m003's last 18 days were written in one afternoon."""
    cube = empty_cube(4, DAYS)
    rng = np.random.default_rng(4)
    for d in range(4):
        for k in range(DAYS):
            run_all_day(cube, d, k)
            # Each machine's own load and cycle: no two alike, none suspiciously regular.
            cube.data[d, k, F["power_mean_kw"]] = 5.0 + d + rng.gamma(2.0, 0.5, 1440)
            cube.data[d, k, F["count_total"]] = rng.poisson(2.0 + d, 1440)
    return MemoryReader(cube.devices, cube, capture=capture)


def capture_records() -> dict[str, dict[int, CaptureHour]]:
    live = _hours(range(DAYS), 0.0)
    return {
        "m000": live, "m001": live,
        "m002": _hours(range(DAYS), 0.05),       # a little replayed buffer every hour: live
        "m003": _hours(range(12), 0.0) | _hours(range(12, DAYS), 1.0, CAPTURED),
    }


def run(capture, **config):
    return verify(factory(capture), window=WINDOW, voucher=VOUCHER, config=VerifyConfig(**config))


def test_backfilled_days_do_not_count_and_the_report_says_so_at_the_top():
    report = run(capture_records())
    by_id = {r.info.id: r for r in report.devices}
    assert [r.info.id for r in report.devices if r.counted] == ["m000", "m001", "m002"]
    assert report.verdict.verdict == "FAIL"
    flag, = by_id["m003"].flags
    assert flag.reason == "backfilled_data" and flag.value == 12 and flag.threshold == 15
    assert by_id["m003"].activity.days_active == 12
    text = report.render_text()
    head = text[:text.index("Arithmetic:")]
    assert ("m003: 18 of 30 days backfilled, 25.9 k samples captured "
            "2026-11-30 14:02–14:40 (UTC)") in head
    assert "not counted as active days" in head
    doc = report.to_dict()
    assert doc["capture"]["known"] is True
    assert [d["id"] for d in doc["capture"]["backfilled_devices"]] == ["m003"]
    assert doc["capture"]["backfilled_devices"][0]["days_backfilled"] == 18
    assert doc["summary"]["by_reason"] == {"backfilled_data": 1}


def test_accept_backfill_counts_them_and_says_so():
    report = run(capture_records(), accept_backfill=True)
    assert report.verdict.verdict == "PASS" and all(r.counted for r in report.devices)
    assert "COUNTED anyway (--accept-backfill)" in report.render_text()
    assert any(n.startswith("BACKFILLED DATA ACCEPTED") for n in report.notes)


def test_a_store_without_capture_records_counts_as_before_and_says_capture_time_is_unknown():
    report = run(None)
    assert report.verdict.verdict == "PASS"
    assert "Capture time: unknown" in report.render_text()
    assert report.to_dict()["capture"]["known"] is False


def test_a_device_without_capture_records_among_others_is_named():
    records = capture_records()
    del records["m001"]
    report = run(records)
    assert any("capture time unknown for 1 device(s)" in n and "m001" in n for n in report.notes)


def test_store_history_written_in_one_go_is_backfilled(tmp_path):
    path = str(tmp_path / "s.db")
    now = time.time_ns()
    today = dt.datetime.fromtimestamp(now / 1e9, dt.timezone.utc).date()
    first = today - dt.timedelta(days=6)
    with Store.open(path) as store:
        store.upsert_device(DeviceSpec(id="m000", name="press", protocol="opcua", connection={},
                                       signals=(SignalSpec("count_total"),)))
        t0 = int(dt.datetime(first.year, first.month, first.day,
                             tzinfo=dt.timezone.utc).timestamp()) * 10**9
        store.write_samples([Sample("m000", "count_total", t0 + i * 600 * 10**9, float(i))
                             for i in range(5 * 144)])
        for k in range(5):
            arr = empty_day()
            arr[F["running_s"]] = 60.0
            arr[F["count_total"]] = 1.0
            arr[F["samples"]] = 1
            store.write_rollup_day("m000", first + dt.timedelta(days=k), arr)
    window = Window(first, first + dt.timedelta(days=4), "UTC")
    with StoreReader([path]) as reader:
        assert sum(h.backfilled for h in reader.capture_hours("m000").values()) == 5 * 144
        report = verify(reader, window=window, voucher=Voucher(item="设备物联", amount=1500))
    assert report.devices[0].flags[0].reason == "backfilled_data"
    assert "m000: 5 of 5 days backfilled, 720 samples captured" in report.render_text()


@pytest.mark.parametrize("accept", [False, True])
def test_cli_accept_backfill_flag(tmp_path, accept):
    from verifier.cli import add_arguments, build_config
    import argparse
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["x.db", *(["--accept-backfill"] if accept else [])])
    assert build_config(args).accept_backfill is accept
