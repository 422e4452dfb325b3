"""Fixtures for the simulator tests: a private Mosquitto per test that wants one."""
from __future__ import annotations

from typing import Iterator

import pytest

from simulator.broker import MosquittoBroker


@pytest.fixture
def broker() -> Iterator[MosquittoBroker]:
    with MosquittoBroker() as b:
        yield b
