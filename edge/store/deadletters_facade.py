"""The dead letters' part of the `Store` facade: samples the store or the pipeline refused
(edge.deadletters) and payloads a connector refused before they became samples
(edge.rejects), both bounded, on the store's own connections."""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from .. import deadletters, rejects
from ..records import DeadLetter


class DeadLetterFacade:
    """Mixed into Store, whose writer transaction (`_write`), reads (`_query`) and bound
    (`dead_letter_rows`) it uses."""

    dead_letter_rows: int
    _write: Callable[..., Any]
    _query: Callable[..., Any]

    def add_dead_letters(self, items: Sequence[tuple[Any, str]], ts_ns: int) -> None:
        """Keep (sample, reason) pairs the store or the pipeline refused, arrived at `ts_ns`.

        Fields are stored as bounded text (edge.deadletters), so this never fails on the value
        that got the sample refused; only the newest `dead_letter_rows` rows are kept, the counts
        per device and reason in full."""
        if items:
            self._write(deadletters.add, items, ts_ns, self.dead_letter_rows)

    def dead_letter(self, samples: Sequence[Any], reason: str, ts_ns: int | None = None) -> None:
        """`add_dead_letters` for samples sharing one reason (now, unless `ts_ns` is given)."""
        self.add_dead_letters([(s, reason) for s in samples],
                              time.time_ns() if ts_ns is None else ts_ns)

    def dead_letters(self, device_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters (of one device), newest first."""
        return self._query(deadletters.newest, device_id, limit)

    def dead_letter_counts(self) -> dict[str, dict[str, int]]:
        """device_id -> reason -> samples ever dead-lettered (not reduced by trimming)."""
        return self._query(deadletters.counts)

    # ------------------------------------------------------------------ payload dead letters
    def add_rejects(self, items: Sequence[rejects.Reject],
                    uncounted: dict[tuple[str, str], int] | None = None) -> int:
        """Keep payloads a connector refused (edge.rejects), the newest `dead_letter_rows`."""
        if not items and not uncounted:
            return 0
        return int(self._write(rejects.add, items, self.dead_letter_rows, uncounted))

    def rejects(self, *, device_id: str | None = None, reason: str | None = None,
                limit: int = 100) -> list[rejects.StoredReject]:
        return self._query(rejects.newest, device_id=device_id, reason=reason, limit=limit)

    def reject_counts(self) -> dict[str, dict[str, int]]:
        """device_id ('' unknown) -> reason -> payloads ever refused (not reduced by trimming)."""
        return self._query(rejects.counts)
