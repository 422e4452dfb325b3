"""Simulated history is never evidence: flagged `simulated_data` unless explicitly accepted,
and an accepted run says so in its notes."""
from __future__ import annotations

import datetime as dt
import json
import shutil

from edge.store import Store
from tests.verifier.test_cli import START, WINDOW, cli, store_path  # noqa: F401 - fixture


def _mark_simulated(path: str, device_id: str) -> None:
    store = Store.open(path)
    try:
        lo = dt.datetime.combine(START, dt.time(), tzinfo=dt.timezone.utc)
        store.add_event("simulated_history", int(lo.timestamp() * 1e9), device_id, {
            "from_ns": int(lo.timestamp() * 1e9),
            "to_ns": int((lo + dt.timedelta(days=6)).timestamp() * 1e9), "samples": 1234})
    finally:
        store.close()


def test_simulated_history_is_flagged_and_not_counted(store_path, tmp_path):  # noqa: F811
    path = str(tmp_path / "copy.db")
    shutil.copy(store_path, path)
    _mark_simulated(path, "press-1")
    out_json = tmp_path / "r.json"
    code, out, err = cli(path, "--item", "设备物联", "--amount", "4500", *WINDOW,
                         "--json", str(out_json))
    assert code == 1, err   # 3 devices required, only 2 are real
    doc = json.loads(out_json.read_text(encoding="utf-8"))
    by_id = {d["id"]: d for d in doc["devices"]}
    assert not by_id["press-1"]["counted"]
    assert by_id["press-1"]["reasons"] == ["simulated_data"]
    flag = by_id["press-1"]["flags"][0]
    assert flag["evidence"]["spans"][0]["samples"] == 1234
    assert by_id["press-0"]["counted"] and by_id["press-2"]["counted"]

    code, out, err = cli(path, "--item", "设备物联", "--amount", "4500", *WINDOW,
                         "--json", str(out_json), "--accept-simulated")
    assert code == 0, err
    doc = json.loads(out_json.read_text(encoding="utf-8"))
    assert doc["summary"]["counted"] == 3
    assert any("SIMULATED DATA ACCEPTED" in n for n in doc["notes"])
    assert "SIMULATED DATA ACCEPTED" in out
