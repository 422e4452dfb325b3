"""`shangyun verify` exit codes on a small real store: 0 PASS, 1 FAIL, 2 bad input."""
import argparse
import contextlib
import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.model import DeviceSpec, IdentityEvidence, SignalSpec
from edge.rollup_layout import F, empty_day
from edge.store import Store
from verifier.cli import add_arguments, main, run

REPO = Path(__file__).resolve().parents[2]   # so the subprocess imports this checkout
DAYS = 6
START = dt.date(2024, 5, 1)
WINDOW = ["--from", "2024-05-01", "--to", "2024-05-06"]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "factory.db"
    store = Store.open(path)
    rng = np.random.default_rng(3)
    for i in range(3):
        did = f"press-{i}"
        store.upsert_device(DeviceSpec(id=did, name=f"Press {i}", protocol="opcua",
                                       connection={}, signals=(SignalSpec("state"),),
                                       ideal_cycle_s=30.0, line="L1"))
        store.set_identity(did, IdentityEvidence(protocol="opcua", serial_number=f"SN{i}"), 0)
        for k in range(DAYS):
            arr = empty_day()
            start = int((6 + i + rng.random()) * 60)
            arr[F["idle_s"], :start] = 60
            arr[F["running_s"], start:] = 60
            arr[F["samples"], :] = 60
            n = 1440 - start
            arr[F["count_total"], start:] = rng.integers(1, 3, n)
            power = 4 + i + rng.normal(0, 0.3, n)
            arr[F["power_mean_kw"], start:] = power
            arr[F["energy_kwh"], start:] = power / 60
            store.write_rollup_day(did, START + dt.timedelta(days=k), arr)
    store.close()
    return str(path)


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    p = argparse.ArgumentParser()
    add_arguments(p)
    code = run(p.parse_args([*argv, "--quiet"]), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_pass_exit_0_with_json(store_path, tmp_path):
    out_json = tmp_path / "r.json"
    code, out, err = cli(store_path, "--item", "设备物联", "--amount", "4500", *WINDOW,
                         "--json", str(out_json))
    assert code == 0, err
    assert "VERDICT: PASS" in out and "press-2" in out
    doc = json.loads(out_json.read_text(encoding="utf-8"))
    assert doc["schema"] == "shangyun.verify/1" and doc["summary"]["counted"] == 3
    assert doc["sources"] == [store_path]
    assert doc["devices"][0]["identity"]["serial_number"] == "SN0"


def test_fail_exit_1(store_path):
    code, out, _ = cli(store_path, "--item", "5", "--amount", "6000", *WINDOW)
    assert code == 1
    assert "too_few_devices" in out and "4,500.00" in out


def test_contract_amount_and_region(store_path):
    # 6,000 × 70% = 4,200 -> ⌈4200 / 1500⌉ = 3 devices
    code, out, _ = cli(store_path, "--item", "设备物联", "--contract-amount", "6000",
                       "--region", "prd", *WINDOW)
    assert code == 0 and "= 3" in out


def test_voucher_file(store_path, tmp_path):
    v = tmp_path / "v.yaml"
    v.write_text("programme: '2018'\nitem: 生产设备状态监控\namount: 6000\n", encoding="utf-8")
    code, out, _ = cli(store_path, "--voucher", str(v), *WINDOW)
    assert code == 0 and "⌈6,000.00 ÷ 2,000.00⌉ = 3" in out


@pytest.mark.parametrize("argv,message", [
    (["--item", "云上飞行", "--amount", "1"], "no item"),
    (["--item", "设备物联"], "--amount"),
    (["--item", "设备物联", "--amount", "abc"], "not a number"),
    (["--item", "设备物联", "--amount", "100", "--from", "2024-13-01", "--to", "2024-05-06"],
     "--from"),
    (["--item", "设备物联", "--amount", "100", "--from", "2024-05-06", "--to", "2024-05-01"],
     "before it starts"),
    (["--item", "设备物联", "--amount", "100", "--calendar", "/nonexistent.yaml"], "calendar"),
    # used to end in an OverflowError traceback (the day after 9999-12-31, 90 days before 0001)
    (["--item", "设备物联", "--amount", "100", "--from", "2024-05-01", "--to", "9999-12-31"],
     "outside the dates a store can hold"),
    (["--item", "设备物联", "--amount", "100", "--to", "0001-01-02"],
     "outside the dates a store can hold"),
])
def test_bad_input_exit_2_without_traceback(store_path, argv, message):
    code, out, err = cli(store_path, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_missing_store_exit_2(tmp_path):
    code, _, err = cli(str(tmp_path / "nope.db"), "--item", "设备物联", "--amount", "1500")
    assert code == 2 and "does not exist" in err


def test_against_list_flags_claimed_devices(store_path, tmp_path):
    earlier = tmp_path / "earlier.yaml"
    earlier.write_text("label: 2023 voucher\nserials: [SN1]\n", encoding="utf-8")
    code, out, _ = cli(store_path, "--item", "设备物联", "--amount", "4500", *WINDOW,
                       "--against", str(earlier))
    assert code == 1 and "claimed_before" in out


def test_main_usage_error_is_2(capsys):
    assert main(["--item"]) == 2


# ------------------------------------------------------------------ bad input (issue 7)

def no_traceback(code, err):
    return code in (0, 1, 2) and "Traceback" not in err


def test_window_a_century_before_the_data_fails_on_too_few_days(store_path):
    # Used to allocate a cube for every day since 1926 (55 GiB at 32 devices) and crash.
    code, out, err = cli(store_path, "--item", "设备物联", "--amount", "4500",
                         "--from", "1926-01-01", "--to", "2024-05-06")
    assert code == 1 and no_traceback(code, err)
    assert "too_few_days" in out and "were not read" in out


def test_window_without_data_exit_2_names_the_data_span(store_path):
    code, _, err = cli(store_path, "--item", "设备物联", "--amount", "4500",
                       "--from", "1926-01-01", "--to", "1930-01-01")
    assert code == 2 and "hold data from 2024-05-01 to 2024-05-06" in err


def test_same_store_twice_exit_2(store_path, tmp_path):
    link = tmp_path / "same.db"
    link.symlink_to(store_path)
    for twice in ([store_path, store_path], [store_path, str(link)]):
        code, _, err = cli(*twice, "--item", "设备物联", "--amount", "4500", *WINDOW)
        assert code == 2 and "give each store once" in err, err


def test_directory_as_store_exit_2(tmp_path, capsys):
    # Through `python -m verifier`'s entry point.
    code = main([str(tmp_path), "--item", "设备物联", "--amount", "4500", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "is a directory" in err and "disk I/O" not in err


@pytest.mark.parametrize("flag,value,message", [
    ("--amount", "1e300", "not a plausible amount"),
    ("--amount", "1e999999", "not a plausible amount"),   # Decimal overflow when scaled
    ("--amount", "10000000001", "not a plausible amount"),
    ("--amount", "-1500", "non-negative"),
    ("--amount", "nan", "non-negative"),
    ("--amount", "inf", "non-negative"),
    ("--amount", "-inf", "non-negative"),
    ("--contract-amount", "1e300", "not a plausible amount"),
])
def test_implausible_amount_exit_2(store_path, flag, value, message):
    extra = ["--region", "prd"] if flag == "--contract-amount" else []
    code, out, err = cli(store_path, "--item", "设备物联", f"{flag}={value}", *extra, *WINDOW)
    assert code == 2 and message in err and out == ""


def _edited(store_path, tmp_path, sql):
    path = tmp_path / "edited.db"
    shutil.copyfile(store_path, path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(sql)
        conn.commit()
    return str(path)


@pytest.mark.parametrize("sql,message", [
    ("PRAGMA user_version = 999", "newer shangyun"),
    ("UPDATE rollup_days SET data = 'text' WHERE day = '2024-05-02'", "cannot read"),
    ("UPDATE rollup_days SET data = x'00112233' WHERE day = '2024-05-02'", "corrupt"),
    ("UPDATE devices SET identity = '{not json' WHERE id = 'press-0'", "cannot read"),
    ("UPDATE devices SET identity = '[1, 2]' WHERE id = 'press-0'", "cannot read"),
    ("UPDATE devices SET ideal_cycle_s = 'fast' WHERE id = 'press-0'", "not a number"),
    ("INSERT INTO events (ts_ns, device_id, kind, data) "
     "VALUES (1714600000000000000, 'press-0', 'identity_changed', '{bad')", "cannot read"),
    ("INSERT INTO events (ts_ns, device_id, kind, data) "
     "VALUES ('soon', 'press-0', 'identity_changed', '{}')", "cannot read"),
])
def test_damaged_store_exit_2_naming_it(store_path, tmp_path, sql, message):
    path = _edited(store_path, tmp_path, sql)
    code, _, err = cli(path, "--item", "设备物联", "--amount", "4500", *WINDOW)
    assert code == 2 and message in err and path in err, err


@pytest.mark.parametrize("content,message", [
    (b"", "not a shangyun store"),
    (b"device,day\npress-0,2024-05-01\n", "not a database"),
    ("truncated", "malformed"),
])
def test_not_a_store_exit_2(store_path, tmp_path, content, message):
    path = tmp_path / "x.db"
    if content == "truncated":
        with open(store_path, "rb") as f:
            content = f.read(4096)
    path.write_bytes(content)
    code, _, err = cli(str(path), "--item", "设备物联", "--amount", "4500", *WINDOW)
    assert code == 2 and message in err, err


@pytest.mark.parametrize("case", ["directory", "text_blob", "far_future"])
def test_python_m_verifier_bad_input_exit_2_without_traceback(store_path, tmp_path, case):
    # In a real process, so an escaped exception would show as a traceback on stderr.
    store, extra = store_path, list(WINDOW)
    if case == "directory":
        store = str(tmp_path)
    elif case == "text_blob":
        store = _edited(store_path, tmp_path, "UPDATE rollup_days SET data = 'text'")
    else:
        extra = ["--from", "2024-05-01", "--to", "9999-12-31"]
    proc = subprocess.run([sys.executable, "-m", "verifier", store, "--item", "设备物联",
                           "--amount", "4500", "--quiet", *extra],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("shangyun verify: error: ") and proc.stderr.count("\n") == 1


def test_against_a_directory_exit_2(store_path, tmp_path):
    code, _, err = cli(store_path, "--item", "设备物联", "--amount", "4500", *WINDOW,
                       "--against", str(tmp_path))
    assert code == 2 and "is not a file" in err


def test_against_store_with_a_century_long_window_reads_only_its_data(store_path, tmp_path):
    # The earlier claim's lookback reached back 365 days before a window from 1926: a cube
    # per day for the against store too. Its identical days still mark every device claimed.
    earlier = tmp_path / "earlier.db"
    shutil.copyfile(store_path, earlier)
    code, out, err = cli(store_path, "--item", "设备物联", "--amount", "4500",
                         "--from", "1926-01-01", "--to", "2024-05-06", "--against", str(earlier))
    assert code == 1, err
    assert out.count("claimed_before") >= 3


@pytest.mark.parametrize("flag,content,message", [
    ("--calendar", 'shifts:\n  - {start: "08:00", end: "20:00", breaks: [["12:00"]]}\n',
     "breaks must be a list of [start, end] pairs"),
    ("--calendar", "utc_offset_h: abc\n", "utc_offset_h 'abc' is not a number"),
    ("--calendar", "utc_offset_h: .nan\n", "between -12 and +14"),
    ("--calendar", "holidays: 5\n", "holidays must be a list"),
    ("--calendar", "shifts: abc\n", "shifts must be a list"),
    ("--calendar", 'shifts:\n  - {start: "08:00", end: "20:00", days: mon}\n',
     "days must be a list"),
    # A misspelt key used to be ignored: an empty calendar is 24/7, every figure changed.
    ("--calendar", 'shift:\n  - {start: "08:00", end: "20:00"}\n', "unknown key shift"),
    ("--calendar", 'shifts:\n  - {start: "08:00", end: "20:00", brakes: []}\n',
     "unknown key brakes"),
    ("--calendar", "planned_states: [running]\n", "running cannot be a planned stop"),
    ("--calendar", "planned_states: [nap]\n", "planned_states"),
    ("--tariff", "prices_yuan_per_kwh: {flat: 1}\nperiod: {}\n", "unknown key period"),
    ("--tariff", "prices_yuan_per_kwh: {flat: 1}\nutc_offset_h: abc\n", "is not a number"),
    ("--tariff", "prices_yuan_per_kwh: {flat: 1}\nutc_offset_h: 1e300\n", "between -12 and +14"),
    ("--voucher", "item: 5\namount: 4500\nprior_items: 5\n", "prior_items must be a list"),
    ("--voucher", "item: 5\ncontract_amount: 6000\nregion: [prd]\n", "region must be one of"),
    # bool("no") is True: this used to grant the 两化融合 bonus
    ("--voucher", "item: 5\namount: 4500\nlianghua_bonus: 'no'\n", "must be true or false"),
])
def test_malformed_input_file_exit_2(store_path, tmp_path, flag, content, message):
    path = tmp_path / "input.yaml"
    path.write_text(content, encoding="utf-8")
    extra = [] if flag == "--voucher" else ["--item", "设备物联", "--amount", "4500"]
    code, _, err = cli(store_path, flag, str(path), *extra, *WINDOW)
    assert code == 2 and message in err and str(path) in err, err


def test_calendar_planned_states_count_as_planned_time(store_path, tmp_path):
    plain, with_setup = tmp_path / "plain.yaml", tmp_path / "setup.yaml"
    plain.write_text("utc_offset_h: 8\n", encoding="utf-8")
    with_setup.write_text("utc_offset_h: 8\nplanned_states: [planned_stop, setup, idle]\n",
                          encoding="utf-8")
    outs = []
    for path in (plain, with_setup):
        json_path = tmp_path / f"{path.stem}.json"
        code, _, err = cli(store_path, "--calendar", str(path), "--item", "设备物联",
                           "--amount", "4500", *WINDOW, "--json", str(json_path))
        assert code in (0, 1), err
        outs.append(json.loads(json_path.read_text(encoding="utf-8")))
    assert outs[1]["thresholds"]["oee"]["planned_states"] == ["idle", "planned_stop", "setup"]
    a0 = outs[0]["oee"]["plant"]["availability"]
    a1 = outs[1]["oee"]["plant"]["availability"]
    assert a1 > a0      # idle and setup no longer count against availability


def test_calendar_without_breaks_or_holidays_loads(store_path, tmp_path):
    path = tmp_path / "cal.yaml"
    path.write_text('shifts:\n  - {start: "08:00", end: "20:00", days: [mon, tue, wed]}\n',
                    encoding="utf-8")
    code, out, err = cli(store_path, "--calendar", str(path), "--item", "设备物联",
                         "--amount", "4500", *WINDOW)
    assert code == 0, err
    assert "Plant OEE" in out


@pytest.mark.parametrize("content", ["ids: 5\n", "serials: {SN1: true}\n"])
def test_malformed_against_list_exit_2(store_path, tmp_path, content):
    # `ids: 5` was a TypeError traceback; a mapping was silently read as its keys.
    path = tmp_path / "earlier.yaml"
    path.write_text(content, encoding="utf-8")
    code, _, err = cli(store_path, "--item", "设备物联", "--amount", "4500", *WINDOW,
                       "--against", str(path))
    assert code == 2 and "must be a list" in err, err
