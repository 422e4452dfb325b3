"""Store dead letters: bounded rows, full counts, newest first, and never failing on the value."""
from __future__ import annotations

import sqlite3

from edge import migrations
from edge.model import Sample
from edge.store import Store


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_rows_are_bounded_and_counts_kept_in_full(store_path):
    with Store.open(store_path, dead_letter_rows=5) as s:
        for k in range(12):
            s.add_dead_letters([(Sample("m1" if k % 3 else "m2", "a", k, float(k)), "why")], ts_ns=k)
        letters = s.dead_letters()
        assert [d.ts for d in letters] == ["11", "10", "9", "8", "7"]   # newest first
        assert s.dead_letter_counts() == {"m1": {"why": 8}, "m2": {"why": 4}}
        assert [d.ts for d in s.dead_letters(device_id="m2")] == ["9"]
        assert [d.ts for d in s.dead_letters(limit=2)] == ["11", "10"]


def test_any_value_can_be_dead_lettered(store):
    items = [
        (Sample("m1", "a", 1, 2**200), "big"),
        (Sample("m1", "a", 10**30, 1.0), "big ts"),
        (Sample("m1", "a", 1, "x\ud800y"), "surrogate"),
        (Sample("m\udc80", "s\ud800", 1, 1.0), "bad names"),
        (Sample("m1", "a", 1, BrokenRepr()), "broken repr"),   # type: ignore[arg-type]
        (Sample("m1", "a", 1, "v" * 10_000), "long"),
        (Sample("m1", "a", 1, 10**5000), "too many digits for repr"),
        ("not a sample", "wrong type"),
        (None, "nothing"),
    ]
    store.dead_letter([Sample("m3", "a", 1, 1.0)], "via dead_letter")
    store.add_dead_letters(items, ts_ns=123)
    letters = {d.reason: d for d in store.dead_letters()}
    assert letters["big"].value == repr(2**200)
    assert letters["big ts"].ts == str(10**30)
    assert letters["surrogate"].value == "'x\\ud800y'"
    assert (letters["bad names"].device_id, letters["bad names"].signal) == ("m\\udc80", "s\\ud800")
    assert "repr failed" in letters["broken repr"].value
    assert len(letters["long"].value) == 200
    assert letters["too many digits for repr"].value.startswith("<int")
    assert letters["wrong type"].device_id == "?" and letters["wrong type"].value == "'not a sample'"
    assert letters["nothing"].arrived_ns == 123
    assert store.dead_letter_counts()["m3"] == {"via dead_letter": 1}


def test_a_version_1_store_gains_the_dead_letter_tables(store_path):
    conn = sqlite3.connect(store_path, isolation_level=None)
    for m in migrations.MIGRATIONS[:1]:
        m.apply(conn)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with Store.open(store_path) as s:
        s.dead_letter([Sample("m1", "a", 1, 1.0)], "why")
        assert s.dead_letter_counts() == {"m1": {"why": 1}}
