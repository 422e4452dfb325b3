"""The demo's last step: what a reviewer would get for a 设备物联 voucher sized to the factory.

The voucher asks for exactly as many devices as the factory has (capped by the item's cap of
100,000 yuan at 1,500 yuan a device), so a single device the verifier refuses to count shows
up as a FAIL with its reason rather than disappearing into a margin.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from verifier.policy import Voucher
from verifier.reading import StoreReader
from verifier.verify import VerifyConfig, verify
from verifier.window import Window

ITEM = "设备物联"
PER_DEVICE_YUAN = 1_500
ITEM_CAP_YUAN = 100_000


def sample_voucher(machines: int) -> Voucher:
    return Voucher(item=ITEM, programme="2020",
                   amount=min(machines * PER_DEVICE_YUAN, ITEM_CAP_YUAN))


def verify_demo(store_path, *, days: int, machines: int,
                out_dir: Path | None = None) -> dict[str, Any]:
    """Verify the demo store; with `out_dir`, also write the full reviewer report there
    (verification.txt and verification.json)."""
    voucher = sample_voucher(machines)
    with StoreReader([str(store_path)]) as reader:
        # The demo's history is simulated, and written in one go (backfilled), by construction;
        # accepting it is the point of a demo, and the report says so.
        report = verify(reader, window=Window.last_days(days), voucher=voucher,
                        config=VerifyConfig(accept_simulated=True, accept_backfill=True))
    full = report.to_dict()
    files = {}
    if out_dir is not None:
        text_path, json_path = out_dir / "verification.txt", out_dir / "verification.json"
        text_path.write_text(report.render_text(), encoding="utf-8")
        json_path.write_text(json.dumps(full, indent=2, ensure_ascii=False), encoding="utf-8")
        files = {"report_text": str(text_path), "report_json": str(json_path)}
    devices = full["devices"]
    claim = full["voucher"]
    plant_oee = (full.get("oee") or {}).get("plant") or {}
    plant_energy = (full.get("energy") or {}).get("plant") or {}
    return {
        "verdict": full["verdict"],
        "voucher": {"item": ITEM, "programme": "2020", "amount": claim["amount"],
                    "required_devices": claim["required_devices"],
                    "supported_amount": claim["supported_amount"]},
        "arithmetic": claim["arithmetic"],
        "window": full["window"],
        "devices_seen": len(devices),
        "devices_counted": claim["counted_devices"],
        "not_counted": {d["id"]: d["reasons"] for d in devices if not d["counted"]},
        "plant_oee": {k: plant_oee.get(k) for k in ("availability", "performance", "quality",
                                                   "oee") if k in plant_oee},
        "plant_energy_kwh": plant_energy.get("kwh"),
        "report_schema": full["schema"],
        "notes": full["notes"],
        **files,
        "note": "history is simulated (see the store's simulated_history events) and "
                "backfilled (its capture records show it written in one go); "
                "the full report: shangyun verify STORE --item 设备物联 --amount N",
    }
