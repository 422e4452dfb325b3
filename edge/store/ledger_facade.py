"""The evidence ledger's part of the `Store` facade (edge.store.ledger does the work): the
checkpoint and the reads an exporter or a verifier needs, on the store's own connections."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from . import ledger, ledger_check

if TYPE_CHECKING:
    from ..evidence_key import EvidenceKey


class LedgerFacade:
    """Mixed into Store, whose writer transaction (`_write`), read snapshot (`_snapshot`),
    path and ledger state (`_ledger`, None when opened without the ledger) it uses."""

    path: str
    _ledger: ledger.Ledger | None

    def checkpoint(self, key: "EvidenceKey", now_ns: int | None = None, *,
                   seal_after_s: float = ledger.DEFAULT_SEAL_AFTER_S) -> ledger.Checkpoint:
        """Flush the pending samples digest into the ledger, seal the rollup days that are
        final, and sign the head with `key` (edge.evidence_key), in one transaction."""
        if self._ledger is None:
            raise StoreError(f"{self.path}: store opened without its ledger")
        wall = time.time_ns() if now_ns is None else int(now_ns)
        return self._write(self._ledger.checkpoint, key, wall, seal_after_s)

    def ledger_head(self) -> tuple[int, bytes]:
        """(seq, hash) of the newest ledger entry; (0, 32 zero bytes) while it is empty."""
        with self._snapshot() as conn:
            return ledger.read_head(conn)

    def ledger_entries(self, from_seq: int = 1, to_seq: int | None = None) -> list[ledger.Entry]:
        with self._snapshot() as conn:
            return list(ledger.entries(conn, from_seq, to_seq))

    def checkpoints(self, from_seq: int = 1, to_seq: int | None = None) -> list[ledger.Checkpoint]:
        with self._snapshot() as conn:
            return ledger.checkpoints(conn, from_seq, to_seq)

    def last_checkpoint(self) -> ledger.Checkpoint | None:
        with self._snapshot() as conn:
            return ledger.last_checkpoint(conn)

    def receipts(self, checkpoint_seq: int | None = None) -> list[ledger.Receipt]:
        with self._snapshot() as conn:
            return ledger.receipts(conn, checkpoint_seq)

    def add_receipt(self, checkpoint_seq: int, witness_fingerprint: str, body: dict[str, Any],
                    signature: bytes, received_ns: int | None = None) -> None:
        self._write(ledger.add_receipt, checkpoint_seq, witness_fingerprint, body, signature,
                    time.time_ns() if received_ns is None else received_ns)

    def capture_hours(self, device_id: str) -> dict[int, ledger.CaptureHour]:
        """Source hour → samples captured, backfilled, first and last capture (edge.store.ledger)."""
        with self._snapshot() as conn:
            return ledger.capture_hours(conn, device_id)

    def verify_ledger(self, public_key: Any = None) -> ledger_check.LedgerCheck:
        """Recompute the chain and check every checkpoint's signature (with `public_key`, an
        Ed25519 key or its PEM; default the evidence.pub next to the store) and that stored
        rollups, devices and identities are what the ledger says (edge.store.ledger_check)."""
        with self._snapshot() as conn:
            return ledger_check.check(conn, public_key, Path(self.path).parent)
