"""`shangyun status`: what the store says about each device, readable while the gateway writes.

A device's online flag is what its supervisor last recorded; if the gateway process is gone the
flag can be stale, so a device whose newest sample (of any quality) is older than
`stale_after_s` is shown as `stale` whatever the flag says.

"Last sample" is the last GOOD or UNCERTAIN one: the BAD markers the gateway writes when a
machine goes away are not readings from the machine. A device that is connected but has sent
only BAD data over the window is `degraded`, not online: it answers, but nothing it says is
usable.
"""
from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime, timezone
from typing import Any

from edge.model import NS_PER_S, Quality, now_ns
from edge.records import DeviceRecord
from edge.store import Store

from .evidence import evidence_line, evidence_status
from .runtime_status import read_runtime_status, sink_stats
from .status_rejects import payload_reject_counts, render_payload_rejects, with_payload_rejects
from .storeargs import store_path
from .unconfigured import render_unconfigured, unconfigured_devices

log = logging.getLogger(__name__)

STALE_AFTER_S = 300.0
# Device states `device_status` reports; only `online` counts as online.
DEVICE_STATES = ("online", "degraded", "offline", "stale", "never seen", "error")


def device_status(store: Store, *, window_s: float = 60.0,
                  at_ns: int | None = None) -> dict[str, Any]:
    """Per-device status rows plus totals, as plain data (used by the CLI, the API and the demo).

    Each row is computed on its own: a device whose records cannot be read gets state `error`
    and an `error` text, and the others are still reported.
    """
    now = at_ns or now_ns()
    since = now - int(window_s * NS_PER_S)
    runtime = read_runtime_status(store.path, at_ns=now)
    live = (runtime or {}).get("devices", {})
    try:
        rejected = store.dead_letter_counts()
    except Exception:  # noqa: BLE001 - an old or damaged store: no counts rather than no status
        rejected = {}
    payload_rejects = payload_reject_counts(store)
    rows = []
    for d in store.devices():
        try:
            row = _device_row(store, d, now, since, window_s)
        except Exception as e:  # noqa: BLE001 - one unreadable device must not hide the rest
            log.debug("status of %s failed", d.id, exc_info=True)
            row = _error_row(d, e)
        rows.append(with_payload_rejects(_with_counters(row, live.get(d.id), rejected.get(d.id, {})),
                                         payload_rejects.get(d.id, {})))
    data_rate = store.sample_count(since_ns=since) / window_s
    arrival = [r["arrival_per_s"] for r in rows if r["arrival_per_s"] is not None]
    return {
        "devices": rows,
        "total": len(rows),
        "online": sum(1 for r in rows if r["state"] == "online"),
        "degraded": sum(1 for r in rows if r["state"] == "degraded"),
        # Arrival time when a gateway is running: a replayed backlog arrives fast with old
        # timestamps, which a count by data time would show as nothing arriving.
        "samples_per_s": round(sum(arrival), 1) if runtime is not None else round(data_rate, 1),
        "data_samples_per_s": round(data_rate, 1),
        "gateway_running": runtime is not None,
        "pipeline": (runtime or {}).get("pipeline"),
        # From the store: what each sink still has to send is true whether a gateway runs or not.
        "sinks": sink_stats(store),
        # Wear: what the writer wrote to disk (an edge box's eMMC lives by bytes written).
        "store": _storage(store),
        # The evidence ledger: the key a reviewer checks bundles against, how far it got.
        "evidence": evidence_status(store, now),
        "health": (runtime or {}).get("health"),
        "window_s": window_s,
        "unconfigured": unconfigured_devices(store),   # MQTT template ids no block configures
        # Payloads that never became samples, per device ('' when none could be named) and reason.
        "payload_rejects": payload_rejects,
    }


COUNTERS = ("samples", "samples_bad", "payload_errors", "reconnects", "stalls",
            "timestamps_fixed", "skipped_polls", "stale_answers")


def _with_counters(row: dict[str, Any], live: dict[str, Any] | None,
                   rejected: dict[str, int]) -> dict[str, Any]:
    """The row plus the running gateway's counters (None when no gateway is running) and the
    store's dead-letter counts per reason."""
    live = live or {}
    for key in COUNTERS:
        row[key] = live.get(key)
    row["arrival_per_s"] = live.get("arrival_per_s")
    row["data_samples_per_s"] = row["samples_per_s"]
    if row["arrival_per_s"] is not None:
        row["samples_per_s"] = row["arrival_per_s"]
    row["refused_signals"] = live.get("refused_signals") or []
    row["rejected"] = dict(rejected)
    row["rejected_total"] = sum(rejected.values())
    if live.get("last_error") and not row.get("last_error"):
        row["last_error"] = live["last_error"]
    return row


def _device_row(store: Store, d: DeviceRecord, now: int, since: int,
                window_s: float) -> dict[str, Any]:
    recent, recent_usable = usable_counts(store, d.id, since)
    last_any = d.last_sample_ns
    last = last_usable_ns(store, d.id) if last_any else None
    any_age_s = (now - last_any) / NS_PER_S if last_any else None
    if last_any is None:
        state = "never seen"
    elif any_age_s is not None and any_age_s > STALE_AFTER_S:
        state = "stale"
    elif not d.online:
        state = "offline"
    elif last is None or (recent > 0 and recent_usable == 0):
        state = "degraded"
    else:
        state = "online"
    age_s = (now - last) / NS_PER_S if last else None
    return {
        "id": d.id,
        "name": d.name,
        "protocol": d.protocol,
        "line": d.line,
        "state": state,
        "last_sample": _iso(last),
        "last_sample_age_s": round(age_s, 1) if age_s is not None else None,
        "samples_per_s": round(recent / window_s, 2),
        "usable_per_s": round(recent_usable / window_s, 2),
        "identity": d.identity.fingerprint() if d.identity else "",
        "last_error": d.last_error,
        "error": None,
    }


def _error_row(d: DeviceRecord, exc: Exception) -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "protocol": d.protocol, "line": d.line,
            "state": "error", "last_sample": None, "last_sample_age_s": None,
            "samples_per_s": 0.0, "usable_per_s": 0.0, "identity": "",
            "last_error": d.last_error, "error": f"{type(exc).__name__}: {exc}"}


# How far back from a signal's newest (BAD) sample to look for its last good one: the BAD marker
# a disconnect writes follows the last reading closely; a device sending only BAD data for longer
# than this shows no last sample (it is `degraded`, which is the point).
USABLE_LOOKBACK_NS = 86_400 * NS_PER_S


def last_usable_ns(store: Store, device_id: str) -> int | None:
    """Timestamp of the device's newest sample that is not BAD (within USABLE_LOOKBACK_NS of each
    signal's newest sample), or None."""
    best: int | None = None
    for signal in store.signals(device_id):
        newest = store.latest(device_id, signal)
        if newest is None:
            continue
        if newest.quality is not Quality.BAD:
            ts: int | None = newest.ts_ns
        else:
            earlier = store.samples(device_id, signal, newest.ts_ns - USABLE_LOOKBACK_NS,
                                    newest.ts_ns)
            ts = next((x.ts_ns for x in reversed(earlier) if x.quality is not Quality.BAD), None)
        if ts is not None and (best is None or ts > best):
            best = ts
    return best


def usable_counts(store: Store, device_id: str, since_ns: int) -> tuple[int, int]:
    """(all samples, samples that are not BAD) of a device since `since_ns`."""
    total = store.sample_count(device_id=device_id, since_ns=since_ns)
    bad = store.sample_count(device_id=device_id, since_ns=since_ns, quality=Quality.BAD)
    return total, total - bad


def _storage(store: Store) -> dict[str, Any] | None:
    try:
        return store.storage_info()
    except Exception:  # noqa: BLE001 - an old store: no wear figures rather than no status
        log.debug("storage_info failed", exc_info=True)
        return None


def _storage_line(st: dict[str, Any]) -> str:
    size = (st.get("file_bytes") or 0) + (st.get("wal_bytes") or 0)
    text = f"store {st.get('path')}: {size / 1e6:,.1f} MB"
    if st.get("values_per_s") is not None:
        text += f", writing {st['values_per_s']:,.0f} values/s"
        if st.get("bytes_per_s") is not None:
            text += f", {st['bytes_per_s'] / 1e3:,.1f} kB/s to disk"
        if st.get("bytes_per_value"):
            text += f" ({st['bytes_per_value']:,.0f} bytes per value)"
        if st.get("as_of_ns"):
            text += f", since the writer opened it, as of {(_iso(st['as_of_ns']) or '')[:19]}"
    return text


def _counter_text(r: dict[str, Any]) -> str:
    parts = []
    if r.get("arrival_per_s") is not None:
        parts.append(f"arriving {r['arrival_per_s']:.1f}/s")
    for key, label in (("payload_errors", "payload errors"), ("rejected_total", "rejected"),
                       ("reconnects", "reconnects"), ("stalls", "stalls"),
                       ("timestamps_fixed", "clock fixes"), ("skipped_polls", "skipped polls"),
                       ("stale_answers", "stale answers")):
        if r.get(key):
            parts.append(f"{label} {r[key]}")
    if r.get("refused_signals"):
        parts.append("refused signals " + ",".join(r["refused_signals"]))
    return ", ".join(parts)


def _iso(ts_ns: int | None) -> str | None:
    if not ts_ns:
        return None
    return datetime.fromtimestamp(ts_ns / NS_PER_S, tz=timezone.utc).isoformat(timespec="seconds")


def render(status: dict[str, Any]) -> str:
    degraded = f", {status['degraded']} degraded" if status.get("degraded") else ""
    lines = [f"{status['online']}/{status['total']} devices online{degraded}, "
             f"{status['samples_per_s']} samples/s over the last {status['window_s']:.0f} s", ""]
    header = f"{'device':<14} {'protocol':<8} {'state':<10} {'last sample (UTC)':<26} {'samples/s':>9}  identity"
    lines.append(header)
    lines.append("-" * len(header))
    for r in status["devices"]:
        age = f" ({r['last_sample_age_s']:.0f} s ago)" if r["last_sample_age_s"] is not None else ""
        last = (r["last_sample"] or "-")[:19] + age
        lines.append(f"{r['id']:<14} {r['protocol']:<8} {r['state']:<10} {last:<26} "
                     f"{r['samples_per_s']:>9.2f}  {r['identity']}")
        counters = _counter_text(r)
        if counters:
            lines.append(f"{'':<14} {counters}")
        if r["state"] != "online" and r["last_error"]:
            lines.append(f"{'':<14} last error: {r['last_error']}")
        if r.get("error"):
            lines.append(f"{'':<14} status error: {r['error']}")
    for sk in status.get("sinks") or []:
        lines.append(_sink_line(sk))
    if status.get("store"):
        lines.append(_storage_line(status["store"]))
    if status.get("evidence"):
        lines.append(evidence_line(status["evidence"]))
    lines += render_payload_rejects(status.get("payload_rejects") or {})
    lines += render_unconfigured(status.get("unconfigured") or [])
    return "\n".join(lines)


def _sink_line(sk: dict[str, Any]) -> str:
    age = sk.get("oldest_unsent_age_s")
    state = "connected" if sk.get("connected") else "not connected"
    text = (f"sink {sk.get('name')}: {state}, {sk.get('backlog', 0):,} waiting"
            + (f" (oldest {age:.0f} s)" if age else ""))
    if sk.get("last_error"):
        text += f"; last error: {sk['last_error']}"
    return text


def run_status(args: argparse.Namespace) -> int:
    path = store_path(args)
    store = Store.open(path, readonly=True)
    try:
        status = device_status(store, window_s=args.window)
    finally:
        store.close()
    print(json.dumps(status, indent=2, ensure_ascii=False) if args.json else render(status))
    return 0
