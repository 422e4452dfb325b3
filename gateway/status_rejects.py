"""Payload rejects in `shangyun status`: how many payloads each device sent that never became
samples, per reason (edge/rejects.py keeps the full tally even after its rows were trimmed).

Devices that are not configured show here too: an `unknown_device` reject carries the id the
topic named, and a payload that could not be tied to any device is counted under "" (shown as
`(no device)`), so a flood of garbage is visible in the status and not only in `deadletters`.
"""
from __future__ import annotations

import logging
from typing import Any

from edge.store import Store

log = logging.getLogger(__name__)
NO_DEVICE = "(no device)"


def payload_reject_counts(store: Store) -> dict[str, dict[str, int]]:
    """device id ('' when unknown) -> reason -> payloads refused; {} for a store without the table."""
    try:
        return store.reject_counts()
    except Exception:  # noqa: BLE001 - an old or damaged store: no counts rather than no status
        log.debug("reject_counts failed", exc_info=True)
        return {}


def render_payload_rejects(counts: dict[str, dict[str, int]]) -> list[str]:
    """A line per device with rejects, its reasons by count (most first)."""
    rows = {d: r for d, r in counts.items() if sum(r.values())}
    if not rows:
        return []
    lines = ["", f"payloads refused ({sum(sum(r.values()) for r in rows.values()):,} in all; "
                 "shangyun deadletters lists them):"]
    for device_id in sorted(rows):
        reasons = sorted(rows[device_id].items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append(f"  {device_id or NO_DEVICE:<14} " + ", ".join(f"{reason} {n:,}" for reason, n in reasons))
    return lines


def with_payload_rejects(row: dict[str, Any], rejects: dict[str, int]) -> dict[str, Any]:
    row["payload_rejects"] = dict(rejects)
    row["payload_rejects_total"] = sum(rejects.values())
    return row
