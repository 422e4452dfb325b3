"""Fixtures for the simulator tests: a private Mosquitto per test that wants one."""
from __future__ import annotations

import time
from typing import Callable, Iterator

import pytest

from simulator.broker import MosquittoBroker


@pytest.fixture
def broker() -> Iterator[MosquittoBroker]:
    with MosquittoBroker() as b:
        yield b


def wait_for(condition: Callable[[], object], timeout_s: float = 10.0, what: str = "condition") -> object:
    """Poll `condition` until truthy; fail with `what` after the deadline (no bare sleeps)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)
