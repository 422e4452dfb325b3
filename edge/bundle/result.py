"""What a bundle check reports: problems (alterations), findings (true statements that are
not tampering) and the result a reviewer reads (edge.bundle.check makes it)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..evidence_key import display_fingerprint

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Problem:
    code: str
    where: str
    message: str

    def text(self) -> str:
        return f"{self.where}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "where": self.where, "message": self.message}


@dataclass(frozen=True)
class CheckOptions:
    key: str | None = None                       # the gateway fingerprint the reviewer expects
    witness_keys: tuple[bytes, ...] = ()         # PEM public keys of trusted witnesses
    clock_tolerance_s: float = 900.0             # gateway vs witness clock
    late_witness_s: float = 3600.0               # a receipt later than this after its checkpoint
    seal_after_s: float = 900.0                  # a day is sealed this long after it ended
    backfill_ratio: float = 0.5                  # capture span below this share of the data span


@dataclass(frozen=True)
class IntegrityResult:
    path: str
    problems: tuple[Problem, ...]
    findings: tuple[Problem, ...]
    key: str | None
    key_checked: bool
    checkpoints: int
    entries: int
    signed_seq: int | None
    wall_span_ns: tuple[int, int] | None
    witnessed: int
    witness_checked: bool
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def intact(self) -> bool:
        return not self.problems

    def lines(self, limit: int = 12) -> list[str]:
        out = [f"INTEGRITY: {'INTACT' if self.intact else 'ALTERED'} — {self.path}"]
        key = display_fingerprint(self.key) if self.key else "none"
        out.append(f"  gateway key {key}"
                   + ("" if self.key_checked else " (not compared with a known key: give --key)"))
        span = ""
        if self.wall_span_ns:
            span = f", signed {iso_time(self.wall_span_ns[0])} – {iso_time(self.wall_span_ns[1])}"
        out.append(f"  {self.entries} ledger entries, {self.checkpoints} checkpoints{span}; "
                   f"{self.witnessed} witnessed"
                   + ("" if self.witness_checked else " (receipts not verified: give --witness-key)"))
        for p in limited(self.problems, limit):
            out.append(f"  ✗ {p}")
        for f in limited(self.findings, limit):
            out.append(f"  ! {f}")
        return out

    def render_text(self) -> str:
        return "\n".join(self.lines(limit=1_000)) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"intact": self.intact, "bundle": self.path, "key": self.key,
                "key_checked": self.key_checked, "checkpoints": self.checkpoints,
                "entries": self.entries, "signed_seq": self.signed_seq,
                "witnessed": self.witnessed, "witness_checked": self.witness_checked,
                "problems": [p.to_dict() for p in self.problems],
                "findings": [f.to_dict() for f in self.findings], **self.summary}


def limited(items: Sequence[Problem], limit: int) -> list[str]:
    shown = [p.text() for p in items[:limit]]
    if len(items) > limit:
        shown.append(f"… and {len(items) - limit} more")
    return shown


def iso_time(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / NS_PER_S, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def duration_text(ns: float) -> str:
    s = abs(ns) / NS_PER_S
    if s >= 2 * 86_400:
        return f"{s / 86_400:.1f} days"
    if s >= 2 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 60:.0f} min"


def normalize_fingerprint(fp: str) -> str:
    """'ed25519:1a2b 3c4d…', 'ED25519:1A2B…' or the bare hex → 'ed25519:1a2b3c4d…'."""
    s = "".join(fp.split()).lower()
    return s if s.startswith("ed25519:") else "ed25519:" + s
