"""Payload errors are summarised on time, not only when the next error happens to arrive."""
from __future__ import annotations

import logging

from connectors.reporting import PayloadErrorReporter


def test_a_burst_of_errors_is_summarised_after_the_interval_without_a_new_error(caplog):
    now = [0.0]
    events = []
    rep = PayloadErrorReporter(logging.getLogger("t.reporting"), "m1", summary_interval_s=60,
                               clock=lambda: now[0])
    rep.on_event = lambda kind, data: events.append(data)
    with caplog.at_level(logging.WARNING, logger="t.reporting"):
        for _ in range(3):
            rep.report(ValueError("not JSON"))
        rep.flush()                                  # too early: nothing more yet
        assert len(caplog.records) == 1
        now[0] = 61.0
        rep.flush()
        rep.flush()                                  # nothing new: said once
    assert [r.getMessage() for r in caplog.records][1] == \
        "device m1: 2 more bad payloads (total 3)"
    assert len(caplog.records) == 2
    assert events[-1] == {"count": 3, "since_last_report": 2}


def test_a_rejected_payload_reaches_on_reject_every_time_and_is_counted_per_reason():
    import logging

    from edge.rejects import INVALID, Reject
    from connectors.reporting import PayloadErrorReporter

    reporter = PayloadErrorReporter(logging.getLogger("test"), "d1")
    seen: list[Reject] = []
    reporter.on_reject = seen.append
    for i in range(3):
        r = Reject.of(b"x" * 300, arrived_ns=i, source="mqtt", topic="t", device_id="d1", reason=INVALID,
                      detail="bad")
        reporter.report(ValueError("bad"), reject=r, topic="t")
    reporter.report(ValueError("one field"), topic="t")
    assert [r.arrived_ns for r in seen] == [0, 1, 2] and len(seen[0].head) == 256 and seen[0].size == 300
    assert reporter.rejects == {INVALID: 3} and reporter.count == 4
