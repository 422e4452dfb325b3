"""Counting bad input without flooding the log or the event table.

The first payload error of a source is logged (and reported as an event) with its full
context; after that only a summary count every `summary_interval_s`, so a device that sends
garbage every second costs one log line a minute, not sixty.

A payload refused as a whole is also a dead letter (edge.rejects): `report(..., reject=...)` hands
it to `on_reject` (wired by the supervisor to the gateway, None when nobody listens), every time,
not throttled like the log: the gateway queues and bounds them.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Any, Callable, Mapping

from connectors.base import EventCallback
from edge.rejects import Reject

PAYLOAD_ERROR = "payload_error"
RejectCallback = Callable[[Reject], None]


class PayloadErrorReporter:
    def __init__(
        self,
        logger: logging.Logger,
        device_id: str,
        *,
        summary_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.count = 0
        self.on_event: EventCallback | None = None
        self.on_reject: RejectCallback | None = None
        self.rejects: collections.Counter[str] = collections.Counter()   # reason -> payloads
        self._log = logger
        self._device_id = device_id
        self._interval_s = summary_interval_s
        self._clock = clock
        self._last_report: float | None = None
        self._unreported = 0

    def report(self, error: Exception, *, reject: Reject | None = None, **context: Any) -> None:
        """Count one bad message/register; `context` says where (topic, first bytes, signal...).
        `reject`: the whole payload was refused, and is kept as a dead letter."""
        if reject is not None:
            self.rejects[reject.reason] += 1
            if self.on_reject is not None:
                self.on_reject(reject)
        self.count += 1
        self._unreported += 1
        now = self._clock()
        if self._last_report is None:
            self._log.warning("device %s: bad payload (%s) %s", self._device_id, error, _fmt(context))
            self._emit(_event(error, self.count, context))
        elif now - self._last_report >= self._interval_s:
            self._log.warning(
                "device %s: %d more bad payloads (total %d); latest: %s",
                self._device_id, self._unreported, self.count, error,
            )
            self._emit({"error": str(error), "count": self.count, "since_last_report": self._unreported})
        else:
            return
        self._last_report = now
        self._unreported = 0

    def report_distinct(self, error: Exception, **context: Any) -> None:
        """Count and report, with full context, a fault that does not repeat (the source stops
        doing what caused it), e.g. a register address the device refused: each one is named,
        however many came before."""
        self.count += 1
        self._log.warning("device %s: bad payload (%s) %s", self._device_id, error, _fmt(context))
        self._emit(_event(error, self.count, context))

    def flush(self) -> None:
        """Report the errors counted since the last report once the interval has passed, even
        when no new error arrives to trigger it (called periodically by the gateway): a burst of
        bad payloads must not stay unlogged until the next one, maybe days later."""
        if not self._unreported or self._last_report is None:
            return
        now = self._clock()
        if now - self._last_report < self._interval_s:
            return
        self._log.warning("device %s: %d more bad payloads (total %d)", self._device_id,
                          self._unreported, self.count)
        self._emit({"count": self.count, "since_last_report": self._unreported})
        self._last_report = now
        self._unreported = 0

    def _emit(self, data: Mapping[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(PAYLOAD_ERROR, dict(data))


class ReportsPayloadErrors:
    """Mixin for sources: exposes their reporter as the `on_event` hook the supervisor wires
    and the `payload_errors` count it shows. The source sets `self._errors`."""

    _errors: PayloadErrorReporter

    @property
    def on_event(self) -> EventCallback | None:
        return self._errors.on_event

    @on_event.setter
    def on_event(self, callback: EventCallback | None) -> None:
        self._errors.on_event = callback

    @property
    def on_reject(self) -> RejectCallback | None:
        return self._errors.on_reject

    @on_reject.setter
    def on_reject(self, callback: RejectCallback | None) -> None:
        self._errors.on_reject = callback

    @property
    def payload_rejects(self) -> dict[str, int]:
        """reason -> payloads refused as a whole since start."""
        return dict(self._errors.rejects)

    @property
    def payload_errors(self) -> int:
        return self._errors.count

    def flush_payload_errors(self) -> None:
        self._errors.flush()


def _event(error: Exception, count: int, context: Mapping[str, Any]) -> dict[str, Any]:
    # The reporter's own keys come last: a source's context (a Modbus read's `count` of
    # registers, say) must not replace the running total.
    return {**{k: str(v) for k, v in context.items()}, "error": str(error), "count": count}


def _fmt(context: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v!r}" for k, v in context.items())
