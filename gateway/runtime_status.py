"""The running gateway's own counters, for `shangyun status`, the API and the dashboard.

What the store holds (samples, registry, events) says what arrived; it cannot say how fast data
arrives right now (a replayed backlog has old timestamps: counting by data time shows 0/s while
20,000 samples/s come in), nor how many payloads were malformed, how often a device reconnected,
or what the pipeline is waiting on. Those live in the gateway process, so it writes them every few
seconds to a small JSON file beside the store (`<store>.status.json`, replaced atomically), which
readers in any process merge into what the store says. The file is process state, not data: it is
not evidence, and a reader ignores it once it is older than `FRESH_S` (a killed gateway).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from typing import TYPE_CHECKING, Any

from edge import outbox
from edge.model import NS_PER_S, now_ns

if TYPE_CHECKING:
    from .runner import Gateway

log = logging.getLogger(__name__)

WRITE_EVERY_S = 5.0
FRESH_S = 3 * WRITE_EVERY_S + 5.0


def status_path(store_path: str) -> str:
    return f"{store_path}.status.json"


class RuntimeStatus:
    """Builds the snapshot from a Gateway and keeps what arrival rates need between writes."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self._last: tuple[float, dict[str, int]] | None = None

    def snapshot(self) -> dict[str, Any]:
        gw = self.gateway
        mono = time.monotonic()
        samples = {d: sup.samples for d, sup in gw.supervisors.items()}
        then = self._last
        self._last = (mono, samples)
        try:
            dead = gw.store.dead_letter_counts()
        except Exception:  # noqa: BLE001 - counters must not fail because the store is busy
            dead = {}
        devices = {}
        for device_id, sup in gw.supervisors.items():
            rate = None
            if then is not None and mono > then[0]:
                rate = round((samples[device_id] - then[1].get(device_id, 0)) / (mono - then[0]), 2)
            source = sup.source
            devices[device_id] = {
                "link": str(getattr(sup.state, "value", sup.state)),
                "samples": sup.samples,
                "samples_bad": sup.samples_bad,
                "arrival_per_s": rate,
                "payload_errors": int(getattr(source, "payload_errors", 0)),
                "rejected": dead.get(device_id, {}),
                "reconnects": sup.reconnects,
                "stalls": getattr(sup, "stalls", 0),
                "timestamps_fixed": getattr(sup, "timestamps_fixed", 0),
                "refused_signals": list(getattr(source, "refused_signals", []) or []),
                "last_error": sup.last_error,
                **getattr(sup, "counters", {}),   # the source's own (Modbus skipped_polls, ...)
            }
        return {"pid": os.getpid(), "written_at_ns": now_ns(), "health": gw.health(),
                "sinks": sink_stats(gw.store),
                "pipeline": gw.pipeline.stats().to_dict(), "devices": devices}

    def write(self) -> None:
        path = status_path(self.gateway.config.store_path)
        data = json.dumps(self.snapshot(), sort_keys=True)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".status-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
            os.replace(tmp, path)   # readers see the old file or the new one, never half of one
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def sink_stats(store: Any) -> list[dict[str, Any]]:
    """Each sink's outbox state: connected, backlog rows, oldest unsent age, last error."""
    try:
        return [s.to_dict() for s in outbox.stats(store)]
    except Exception:  # noqa: BLE001 - an old store has no outbox; status must still answer
        return []


def read_runtime_status(store_path: str, *, at_ns: int | None = None) -> dict[str, Any] | None:
    """The running gateway's counters, or None when there is no fresh file (no gateway running,
    or it was killed): callers then show what the store says alone."""
    try:
        with open(status_path(store_path), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    written = data.get("written_at_ns")
    if not isinstance(written, int) or ((at_ns or now_ns()) - written) / NS_PER_S > FRESH_S:
        return None
    return data
