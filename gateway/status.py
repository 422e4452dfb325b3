"""`shangyun status`: what the store says about each device, readable while the gateway writes.

A device's online flag is what its supervisor last recorded; if the gateway process is gone the
flag can be stale, so a device whose last sample is older than `stale_after_s` is shown as
`stale` whatever the flag says.
"""
from __future__ import annotations

import argparse
import json
import os
from datetime import datetime, timezone
from typing import Any

from edge.errors import StoreError
from edge.model import NS_PER_S, now_ns
from edge.store import Store

STALE_AFTER_S = 300.0


def device_status(store: Store, *, window_s: float = 60.0,
                  at_ns: int | None = None) -> dict[str, Any]:
    """Per-device status rows plus totals, as plain data (used by the CLI and the demo)."""
    now = at_ns or now_ns()
    since = now - int(window_s * NS_PER_S)
    rows = []
    for d in store.devices():
        recent = store.sample_count(device_id=d.id, since_ns=since)
        last = d.last_sample_ns
        age_s = (now - last) / NS_PER_S if last else None
        if last is None:
            state = "never seen"
        elif age_s is not None and age_s > STALE_AFTER_S:
            state = "stale"
        else:
            state = "online" if d.online else "offline"
        rows.append({
            "id": d.id,
            "name": d.name,
            "protocol": d.protocol,
            "line": d.line,
            "state": state,
            "last_sample": _iso(last),
            "last_sample_age_s": round(age_s, 1) if age_s is not None else None,
            "samples_per_s": round(recent / window_s, 2),
            "identity": d.identity.fingerprint() if d.identity else "",
            "last_error": d.last_error,
        })
    total_recent = store.sample_count(since_ns=since)
    return {
        "devices": rows,
        "total": len(rows),
        "online": sum(1 for r in rows if r["state"] == "online"),
        "samples_per_s": round(total_recent / window_s, 1),
        "window_s": window_s,
    }


def _iso(ts_ns: int | None) -> str | None:
    if not ts_ns:
        return None
    return datetime.fromtimestamp(ts_ns / NS_PER_S, tz=timezone.utc).isoformat(timespec="seconds")


def render(status: dict[str, Any]) -> str:
    lines = [f"{status['online']}/{status['total']} devices online, "
             f"{status['samples_per_s']} samples/s over the last {status['window_s']:.0f} s", ""]
    header = f"{'device':<14} {'protocol':<8} {'state':<10} {'last sample (UTC)':<26} {'samples/s':>9}  identity"
    lines.append(header)
    lines.append("-" * len(header))
    for r in status["devices"]:
        age = f" ({r['last_sample_age_s']:.0f} s ago)" if r["last_sample_age_s"] is not None else ""
        last = (r["last_sample"] or "-")[:19] + age
        lines.append(f"{r['id']:<14} {r['protocol']:<8} {r['state']:<10} {last:<26} "
                     f"{r['samples_per_s']:>9.2f}  {r['identity']}")
        if r["state"] != "online" and r["last_error"]:
            lines.append(f"{'':<14} last error: {r['last_error']}")
    return "\n".join(lines)


def run_status(args: argparse.Namespace) -> int:
    if args.config:
        from .config import load_config

        path = load_config(args.config).store_path
    else:
        path = args.store
    if not os.path.exists(path):
        raise StoreError(f"no store at {path}: has the gateway run with this config yet?")
    store = Store.open(path, readonly=True)
    try:
        status = device_status(store, window_s=args.window)
    finally:
        store.close()
    print(json.dumps(status, indent=2, ensure_ascii=False) if args.json else render(status))
    return 0
