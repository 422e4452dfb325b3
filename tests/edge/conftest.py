from __future__ import annotations

from pathlib import Path

import pytest

from edge.store import Store



@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "edge.db"


@pytest.fixture
def store(store_path: Path):
    s = Store.open(store_path)
    yield s
    s.close()
