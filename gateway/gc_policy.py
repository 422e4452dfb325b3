"""How often the garbage collector runs in a gateway process (`shangyun run`).

CPython collects its youngest generation every 700 container allocations by default. A gateway
allocates a Sample (a tuple) per value and a few objects per request, so at 20,000 values per
second that is a young collection every few milliseconds. Objects that are alive at such a
moment (the requests and batches of a poll in progress, samples waiting for the store's commit)
are moved to older generations, and when enough have piled up there a full collection walks
every object of the process, the device configurations included. Almost nothing here is
cyclic garbage: samples, batches and requests are freed by reference counting the moment they
are dropped, whatever the collector's schedule.

So the youngest generation is collected every `YOUNG_THRESHOLD` allocations instead. Measured
with tests/bench/bench_modbus.py (1,000 units, 20 registers, every second, one request in
flight per line; same session, each setting twice): 5.7-6.1 us of CPU per value with CPython's
default, 3.9-4.0 with 20,000; RSS unchanged (93 MB). `gc.freeze()` after start-up on top of it
measured 4.3, so it is not used. Cyclic garbage (an exception's traceback, a closed
connection's protocol objects) is still collected, at most `YOUNG_THRESHOLD` allocations late.
"""
from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def apply() -> tuple[int, int, int]:
    """Set the collector's schedule for a long-running gateway; returns the previous one (for
    a caller, such as a benchmark, that restores it)."""
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, before[1], before[2])
    return before
