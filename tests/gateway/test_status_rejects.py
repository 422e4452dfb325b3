"""`shangyun status` shows the payloads each device sent that never became samples, per reason,
from the store's full tally (edge/rejects.py), in text and JSON, devices nobody configured too."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge import rejects
from edge.model import now_ns
from edge.store import Store
from gateway.cli import main
from tests.connectors.devices import device


def reject(device_id: str, reason: str, topic: str = "t/x") -> rejects.Reject:
    return rejects.Reject.of(b"{junk", arrived_ns=now_ns(), source="mqtt", topic=topic,
                             device_id=device_id, reason=reason, detail="test")


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch) -> Path:
    # main() configures process-wide logging: not this test's subject.
    monkeypatch.setattr("gateway.cli._setup_logging", lambda level: None)
    path = tmp_path / "gw.db"
    store = Store.open(path)
    try:
        for dev_id in ("m1", "m2"):
            store.upsert_device(device("mqtt", {"host": "127.0.0.1", "topic": f"t/{dev_id}"},
                                       [{"name": "power_kw", "address": "power_kw"}], device_id=dev_id))
        store.add_rejects([reject("m1", rejects.INVALID)] * 3 + [reject("m1", rejects.OVERSIZE)]
                          + [reject("press-9", rejects.UNKNOWN_DEVICE)] * 2 + [reject("", rejects.INVALID)],
                          # dropped from the gateway's queue before they were written: still counted
                          uncounted={("m1", rejects.UNMAPPABLE): 5})
    finally:
        store.close()
    return path


def test_status_json_counts_payload_rejects_per_device_and_reason(store_path: Path, capsys) -> None:
    assert main(["status", "--store", str(store_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    rows = {r["id"]: r for r in status["devices"]}
    assert rows["m1"]["payload_rejects"] == {"invalid": 3, "oversize": 1, "unmappable": 5}
    assert rows["m1"]["payload_rejects_total"] == 9
    assert rows["m2"]["payload_rejects"] == {} and rows["m2"]["payload_rejects_total"] == 0
    assert status["payload_rejects"] == {"": {"invalid": 1}, "m1": {"invalid": 3, "oversize": 1, "unmappable": 5},
                                         "press-9": {"unknown_device": 2}}


def test_status_text_has_a_line_per_device_with_rejects(store_path: Path, capsys) -> None:
    assert main(["status", "--store", str(store_path)]) == 0
    text = capsys.readouterr().out
    section = text[text.index("payloads refused"):].splitlines()
    assert "12 in all" in section[0]
    lines = {line.split()[0]: line for line in section[1:] if line.startswith("  ") and "(no device)" not in line}
    assert lines["m1"].split(None, 1)[1] == "unmappable 5, invalid 3, oversize 1"
    assert lines["press-9"].split(None, 1)[1] == "unknown_device 2"
    assert "m2" not in lines
    assert any(line.split() == ["(no", "device)", "invalid", "1"] for line in section)


def test_status_without_rejects_has_no_section(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("gateway.cli._setup_logging", lambda level: None)
    Store.open(tmp_path / "empty.db").close()
    assert main(["status", "--store", str(tmp_path / "empty.db")]) == 0
    assert "payloads refused" not in capsys.readouterr().out
