"""`shangyun demo --duration` as a user runs it: a subprocess, JSON on stdout, progress on stderr."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# Why this test once accepted either verdict: history starts at the current time of day N days
# ago, so the window's first UTC day is only partly covered, and with 2 days that partial day
# is the window's whole first half. Two-shift machines are off from 22:00 to 06:00 China time
# and all Sunday, so when the covered part holds no shift time (any day after ~23:50 UTC,
# Mondays after ~14:00 UTC) the verifier flags them `bunched_at_end` and the verdict is FAIL.
# 4 days is not safe either: from 3 days on the clone check applies, and with only 6 machines
# on one shift calendar it sometimes takes two of them for copies (see the report). 7 days
# (what `make demo` runs) gave PASS at every hour tried over a week, by backfilling the same
# history ending at chosen instants (gateway.history.backfill(end_ts=...)).
HISTORY_DAYS = 7


def test_short_demo_with_history_prints_a_summary_and_a_verdict(tmp_path):
    out_dir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--machines", "6", "--duration", "15",
         "--history-days", str(HISTORY_DAYS), "--no-dashboard", "--dir", str(out_dir)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert "online" in proc.stderr  # live progress lines
    assert summary["machines"] == 6
    assert summary["devices_with_data"] == 6
    assert set(summary["samples_stored"]) == {"opcua", "modbus", "mqtt"}
    assert all(n > 0 for n in summary["samples_stored"].values())
    assert summary["live_samples_per_s"] > 0
    assert summary["history"]["simulated"] is True and summary["history"]["samples"] > 0
    verification = summary["verification"]
    # Simulated history is accepted (the demo passes --accept-simulated), so every machine of
    # the virtual factory counts and the voucher sized to it passes.
    assert verification["not_counted"] == {}, verification["not_counted"]
    assert verification["verdict"] == "PASS"
    assert verification["voucher"]["required_devices"] == 6  # 6 × 1,500 yuan ÷ 1,500
    assert verification["devices_seen"] == 6 and verification["devices_counted"] == 6
    assert verification["voucher"]["amount"] == "9000.00"
    assert verification["window"]["days"] == HISTORY_DAYS
    assert any("SIMULATED DATA ACCEPTED" in n for n in verification["notes"])
    report_text = (out_dir / "verification.txt").read_text(encoding="utf-8")
    assert "VERDICT:" in report_text and "SIMULATED DATA ACCEPTED" in report_text
    # ... and so is its backfill, seen from capture times alone (the demo passes --accept-backfill).
    assert "BACKFILLED DATA ACCEPTED" in report_text and "COUNTED anyway" in report_text
    assert json.loads((out_dir / "verification.json").read_text())["schema"] == "shangyun.verify/1"
    # The generated config is a real config, and the history is marked as simulated.
    assert (out_dir / "gateway.yaml").read_text().count("type: ") == 6
    store = Store.open(summary["store"], readonly=True)
    try:
        assert len(store.events(kind="simulated_history", limit=100)) == 6
    finally:
        store.close()


def test_demo_rejects_bad_arguments_with_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--machines", "1",
                           "--dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "at least" in proc.stderr
