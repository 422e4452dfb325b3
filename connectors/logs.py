"""Keeping the protocol libraries' logging to what an operator needs.

For one outage the supervisor logs one warning and, on recovery, one info line per device.
The libraries say the same thing many times over: asyncua warns on every reconnect attempt
("close_secure_channel was called but connection is closed", ~28 a minute) and logs its
publish loop's crash with a traceback; pymodbus logs an ERROR with raw frames (of other
transactions too) for every read a hung device leaves unanswered.

`quiet_libraries(False)`, called once by the application at start, raises their thresholds,
drops their reports of broken links (ours name the device, once) and cuts any other traceback
to one line. `quiet_libraries(True)` hands them back to the root logger's level, tracebacks
included, for debugging.
"""
from __future__ import annotations

import copy
import logging

# Threshold per library when quiet. asyncua's ERRORs are rare (about one per outage) and may
# be news; pymodbus only reports link failures, each of which our source turns into a
# SourceError that the supervisor reports once per outage.
QUIET_LEVELS: dict[str, int] = {"asyncua": logging.ERROR, "pymodbus": logging.CRITICAL}


class _OneLineTracebacks(logging.Handler):
    """Passes a library's records on to the root logger's handlers, each traceback reduced to
    `(ExceptionType: message)` after the text. Installed on the library's top logger with
    propagation off, so it sees the records of every child logger, including those created
    later (asyncua makes one per session and subscription), which a logger filter would not."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and isinstance(record.exc_info[1], OSError):
            # A broken or refused link (ConnectionError, timeouts are OSErrors): the source
            # raises it as a SourceError and the supervisor logs it once per outage, with the
            # device named; asyncua's publish loop would say it again ("Publish iteration
            # crashed", once per outage).
            return
        if record.exc_info or record.stack_info:
            record = _without_traceback(record)
        logging.getLogger().handle(record)


def _without_traceback(record: logging.LogRecord) -> logging.LogRecord:
    short = copy.copy(record)
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        err = record.exc_info[1]
        text = f"{text} ({type(err).__name__}: {err})" if str(err) else f"{text} ({type(err).__name__})"
    short.msg, short.args = text, ()
    short.exc_info = short.exc_text = short.stack_info = None
    return short


def quiet_libraries(verbose: bool) -> None:
    """Quiet (False): asyncua at ERROR, pymodbus at CRITICAL, link errors left to the
    supervisor, other tracebacks as one line.
    Verbose (True): both follow the root logger's level, with full tracebacks. Idempotent;
    the last call wins."""
    for name, quiet_level in QUIET_LEVELS.items():
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, _OneLineTracebacks)]:
            logger.removeHandler(handler)
        # A level on a child (pymodbus sets one on "pymodbus.logging") would override ours.
        for child_name, child in list(logging.Logger.manager.loggerDict.items()):
            if child_name.startswith(name + ".") and isinstance(child, logging.Logger):
                child.setLevel(logging.NOTSET)
        if verbose:
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
        else:
            logger.setLevel(quiet_level)
            logger.addHandler(_OneLineTracebacks())
            logger.propagate = False
