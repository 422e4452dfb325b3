"""The gateway's checkpointer: every `gateway.evidence.checkpoint_s` (and once at a clean stop)
the store's evidence ledger is checkpointed: pending sample digests become a ledger entry, due
rollup days are sealed, and the head is signed with the gateway's key (edge.evidence_key, made
in the store's directory at first start). Listeners (a witness client) get each checkpoint.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

from edge.evidence_key import PUB_FILE, EvidenceKey, EvidenceKeyError, display_fingerprint, \
    fingerprint, load_public_pem
from edge.model import NS_PER_S, now_ns
from edge.store import Store
from edge.store.ledger import Checkpoint

from .config import EvidenceSettings

log = logging.getLogger("shangyun.evidence")

Listener = Callable[[Checkpoint], "Awaitable[None] | None"]


def data_dir(store: Store) -> Path:
    """Where the evidence key lives: next to the store it signs for."""
    return Path(store.path).resolve().parent


class Checkpointer:
    def __init__(self, store: Store, settings: EvidenceSettings,
                 key: EvidenceKey | None = None) -> None:
        self.store = store
        self.settings = settings
        # Made now, not at the first checkpoint: a key that cannot be written (read-only data
        # directory) stops the start with the reason, instead of failing every few minutes.
        self.key = key or EvidenceKey.load_or_create(data_dir(store))
        self.listeners: list[Listener] = []
        self.last: Checkpoint | None = None
        self.failures = 0

    async def checkpoint(self) -> Checkpoint:
        cp = await asyncio.to_thread(self.store.checkpoint, self.key,
                                     seal_after_s=self.settings.seal_after_s)
        self.last = cp
        for listener in self.listeners:
            try:
                result = listener(cp)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - a listener must not stop the checkpoints
                log.exception("checkpoint %d: listener %r failed", cp.seq, listener)
        return cp

    async def run(self) -> None:
        """Checkpoint every checkpoint_s until cancelled; a failure is logged and retried at the
        next round (the pending digest stays in the store meanwhile, nothing is lost)."""
        while True:
            await asyncio.sleep(self.settings.checkpoint_s)
            try:
                await self.checkpoint()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                self.failures += 1
                log.warning("evidence checkpoint failed, retrying in %.0f s: %s",
                            self.settings.checkpoint_s, exc)


def evidence_status(store: Store, at_ns: int | None = None) -> dict[str, Any]:
    """Key fingerprint, chain length and last checkpoint, for `shangyun status`."""
    out: dict[str, Any] = {"key": None, "chain_length": 0, "checkpoints": 0,
                           "last_checkpoint": None, "last_checkpoint_age_s": None}
    try:
        out["key"] = fingerprint(load_public_pem((data_dir(store) / PUB_FILE).read_bytes()))
    except (OSError, EvidenceKeyError):
        pass     # no gateway has run on this store with the ledger yet
    try:
        out["chain_length"] = store.ledger_head()[0]
        cp = store.last_checkpoint()
    except Exception:  # noqa: BLE001 - a store from before the ledger: no evidence figures
        log.debug("ledger status failed", exc_info=True)
        return out
    if cp is not None:
        now = at_ns or now_ns()
        out["checkpoints"] = cp.seq
        out["last_checkpoint"] = datetime.fromtimestamp(
            cp.wall_ns / NS_PER_S, tz=timezone.utc).isoformat(timespec="seconds")
        out["last_checkpoint_age_s"] = round((now - cp.wall_ns) / NS_PER_S, 1)
    return out


def evidence_line(ev: dict[str, Any]) -> str:
    key = display_fingerprint(ev["key"]) if ev.get("key") else "none yet"
    text = f"evidence: key {key}, chain {ev['chain_length']:,} entries"
    if ev.get("last_checkpoint"):
        text += (f", last checkpoint {ev['last_checkpoint'][:19]} "
                 f"({ev['last_checkpoint_age_s']:.0f} s ago)")
    else:
        text += ", no checkpoint yet"
    return text
