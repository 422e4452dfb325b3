"""`shangyun deadletters`: what the gateway refused, readable while it runs.

Two kinds, one listing: payload dead letters (messages a connector could not turn into samples:
edge.rejects, with topic, reason, size and first bytes) and sample dead letters (samples the store
or a sink refused: edge.deadletters). The same report is `GET /api/deadletters`.
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any

from edge.store import Store

from .storeargs import store_path

DEFAULT_LIMIT = 50
_HEAD_SHOWN = 48


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("deadletters", help="payloads and samples the gateway refused, newest first")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-c", "--config", help="gateway YAML file (its store is read)")
    src.add_argument("--store", help="path of the SQLite store")
    p.add_argument("--device", default=None, help="only this device ('' for payloads of no known device)")
    p.add_argument("--reason", default=None,
                   help="only this reason (payloads: invalid, oversize, unknown_device, unmappable, "
                        "bad_sparkplug; samples: the reason contains it)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"rows of each kind (default {DEFAULT_LIMIT})")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=run)


def report(store: Store, *, device_id: str | None = None, reason: str | None = None,
           limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """Both kinds of dead letters as plain data, newest first, with their full counts."""
    limit = max(1, min(int(limit), 10_000))
    payloads = store.rejects(device_id=device_id, reason=reason, limit=limit)
    # Sample dead letters' reasons are free text ("store: ..."): matched by substring, and read
    # past `limit` so that a filter still finds `limit` matches among the newest rows.
    samples = [d for d in store.dead_letters(device_id, limit=limit if reason is None else limit * 20)
               if reason is None or reason in d.reason][:limit]
    return {
        "payloads": [{"id": r.id, "arrived_ns": r.arrived_ns, "source": r.source, "topic": r.topic,
                      "device_id": r.device_id, "reason": r.reason, "detail": r.detail, "size": r.size,
                      "head_hex": r.head.hex(), "head_text": _printable(r.head)} for r in payloads],
        "payload_counts": _filtered(store.reject_counts(), device_id, reason, exact=True),
        "samples": [{"id": d.id, "arrived_ns": d.arrived_ns, "device_id": d.device_id, "signal": d.signal,
                     "ts": d.ts, "value": d.value, "reason": d.reason} for d in samples],
        "sample_counts": _filtered(store.dead_letter_counts(), device_id, reason, exact=False),
    }


def run(args: argparse.Namespace) -> int:
    path = store_path(args)
    store = Store.open(path, readonly=True)
    try:
        data = report(store, device_id=args.device, reason=args.reason, limit=args.limit)
    finally:
        store.close()
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else render(data))
    return 0


def render(data: dict[str, Any]) -> str:
    lines = [f"payload dead letters (total {_total(data['payload_counts'])}):"]
    lines += [f"  {_device or '(unknown)'}: " + ", ".join(f"{r} {n}" for r, n in reasons.items())
              for _device, reasons in data["payload_counts"].items()]
    for r in data["payloads"]:
        lines.append(f"  {_time(r['arrived_ns'])}  {r['device_id'] or '-':<14} {r['reason']:<14} "
                     f"{r['size']:>7} B  {r['topic']}")
        lines.append(f"      {r['detail']}")
        lines.append(f"      {r['head_text'][:_HEAD_SHOWN]!r}")
    lines.append(f"sample dead letters (total {_total(data['sample_counts'])}):")
    for d in data["samples"]:
        lines.append(f"  {_time(d['arrived_ns'])}  {d['device_id']:<14} {d['signal']:<14} "
                     f"value {d['value']}  {d['reason']}")
    return "\n".join(lines)


def _filtered(counts: dict[str, dict[str, int]], device_id: str | None, reason: str | None, *,
              exact: bool) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for dev, reasons in counts.items():
        if device_id is not None and dev != device_id:
            continue
        kept = {r: n for r, n in reasons.items()
                if reason is None or (r == reason if exact else reason in r)}
        if kept:
            out[dev] = kept
    return out


def _total(counts: dict[str, dict[str, int]]) -> int:
    return sum(n for reasons in counts.values() for n in reasons.values())


def _printable(head: bytes) -> str:
    return head.decode("utf-8", "backslashreplace")


def _time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
