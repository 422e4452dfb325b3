from __future__ import annotations

import datetime as dt
import math
import sqlite3
import threading

import numpy as np
import pytest

from edge import migrations
from edge.errors import StoreError, StoreVersionError
from edge.model import DeviceSpec, IdentityEvidence, Quality, Sample
from edge.rollup_layout import FIELDS, LAYOUT_VERSION, F, empty_day
from edge.store import Store

from .timebase import DAY0_NS, DAY_NS, MIN_NS


def spec(device_id: str = "m1", **kw) -> DeviceSpec:
    base = dict(id=device_id, name=f"Machine {device_id}", protocol="modbus",
                connection={"host": "127.0.0.1"}, signals=(), profile="press", line="L1",
                location="hall A", ideal_cycle_s=12.5)
    base.update(kw)
    return DeviceSpec(**base)


def test_new_store_is_wal_and_at_latest_version(store_path):
    Store.open(store_path).close()
    conn = sqlite3.connect(store_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.latest_version()
    conn.close()


def test_store_from_newer_version_is_refused_with_clear_message(store_path):
    Store.open(store_path).close()
    conn = sqlite3.connect(store_path)
    conn.execute(f"PRAGMA user_version = {migrations.latest_version() + 1}")
    conn.close()
    with pytest.raises(StoreVersionError, match="newer shangyun"):
        Store.open(store_path)
    with pytest.raises(StoreVersionError):
        Store.open(store_path, readonly=True)


def test_reopening_does_not_rerun_migrations(store_path):
    with Store.open(store_path) as s:
        s.write_samples([Sample("m1", "x", 1, 1.0)])
    with Store.open(store_path) as s:
        assert s.sample_count() == 1


def test_a_file_that_is_not_a_database_raises_store_error(tmp_path):
    p = tmp_path / "junk.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="junk.db"):
        Store.open(p)


def test_readonly_open_of_missing_file_raises_store_error(tmp_path):
    with pytest.raises(StoreError):
        Store.open(tmp_path / "missing.db", readonly=True)


def test_values_round_trip_with_their_types(store):
    samples = [
        Sample("m1", "flag", 10, True),
        Sample("m1", "flag", 20, False),
        Sample("m1", "count_total", 10, 7),
        Sample("m1", "power_kw", 10, 3.25),
        Sample("m1", "state", 10, "running", Quality.UNCERTAIN),
        Sample("m1", "code", 10, "12"),
    ]
    store.write_samples(samples)
    got = {(s.signal, s.ts_ns): s for s in store.samples("m1")}
    for s in samples:
        g = got[(s.signal, s.ts_ns)]
        assert g == s and type(g.value) is type(s.value)
    assert isinstance(got[("state", 10)].quality, Quality)


def test_nan_reads_back_as_nan(store):
    store.write_samples([Sample("m1", "power_kw", 1, float("nan"), Quality.BAD)])
    (s,) = store.samples("m1")
    assert math.isnan(s.value) and s.quality is Quality.BAD


def test_samples_are_filtered_and_time_ordered(store):
    store.write_samples([Sample("m1", "a", t, float(t)) for t in (30, 10, 20)]
                        + [Sample("m1", "b", 15, 1.0), Sample("m2", "a", 5, 1.0)])
    assert [s.ts_ns for s in store.samples("m1")] == [10, 15, 20, 30]
    assert [s.ts_ns for s in store.samples("m1", "a", start_ns=15, end_ns=30)] == [20]
    assert store.sample_count() == 5
    assert store.sample_count("m1") == 4
    assert store.sample_count("m1", since_ns=20) == 2
    assert store.signals("m1") == ["a", "b"]


def test_latest_is_the_newest_sample_of_the_signal(store):
    store.write_samples([Sample("m1", "a", 10, 1.0), Sample("m1", "a", 30, "x"),
                         Sample("m1", "a", 20, 2.0), Sample("m1", "b", 40, True)])
    assert store.latest("m1", "a") == Sample("m1", "a", 30, "x")
    assert store.latest("m1", "b").value is True
    assert store.latest("m1", "a", since_ns=31) is None
    assert store.latest("m2", "a") is None


def test_sample_timestamps_are_distinct_instants_in_range(store):
    # Two signals polled at the same instant are one reading.
    store.write_samples([Sample("m1", sig, t, 1.0) for t in (10, 20, 30, 40) for sig in "ab"]
                        + [Sample("m2", "a", 25, 1.0)])
    ts = store.sample_timestamps("m1", start_ns=15, end_ns=40)
    assert ts.dtype == np.int64 and ts.tolist() == [20, 30]
    assert store.sample_timestamps("m1", limit=3).tolist() == [10, 20, 30]
    assert store.sample_timestamps("nobody").size == 0


def test_device_record_carries_its_newest_sample_time(store):
    store.upsert_device(spec("m1"))
    assert store.device("m1").last_sample_ns is None
    store.write_samples([Sample("m1", "a", 50, 1.0), Sample("m1", "b", 70, 1.0)])
    store.write_samples([Sample("m1", "a", 60, 1.0)])   # a late one does not move it back
    assert store.device("m1").last_sample_ns == 70
    assert [d.last_sample_ns for d in store.devices()] == [70]


def test_same_sample_written_twice_is_stored_once(store):
    batch = [Sample("m1", "a", 10, 1.0), Sample("m1", "a", 11, 2.0)]
    store.write_samples(batch)
    store.write_samples(batch)
    assert store.sample_count() == 2


def test_malformed_sample_rejects_batch_and_writes_nothing(store):
    with pytest.raises(ValueError, match="sample 1"):
        store.write_samples([Sample("m1", "a", 1, 1.0), Sample("m1", "a", 2, None)])  # type: ignore[arg-type]
    assert store.sample_count() == 0


def test_prune_keeps_retention_and_unrolled_samples(store_path):
    with Store.open(store_path, retention_days=1) as s:
        old, new = DAY0_NS, DAY0_NS + 2 * DAY_NS
        s.write_samples([Sample("m1", "a", old, 1.0), Sample("m1", "a", new, 2.0)])
        # Not rolled up yet: nothing may go.
        assert s.prune(new + MIN_NS) == 0
        s.roll_up(new + MIN_NS)
        assert s.prune(new + MIN_NS) == 1
        assert [x.ts_ns for x in s.samples("m1")] == [new]


def test_device_registry_upsert_keeps_status_and_identity(store):
    store.upsert_device(spec())
    store.set_status("m1", online=True, ts_ns=100)
    ident = IdentityEvidence(protocol="modbus", serial_number="SN1")
    store.set_identity("m1", ident, 100)
    store.upsert_device(spec(name="Renamed"))
    rec = store.device("m1")
    assert rec is not None
    assert (rec.name, rec.online, rec.last_seen_ns, rec.first_seen_ns) == ("Renamed", True, 100, 100)
    assert rec.identity == ident
    assert (rec.profile, rec.line, rec.location, rec.ideal_cycle_s) == ("press", "L1", "hall A", 12.5)
    assert [d.id for d in store.devices()] == ["m1"]
    assert store.device("nope") is None


def test_status_offline_keeps_last_seen_and_records_error(store):
    store.upsert_device(spec())
    store.set_status("m1", online=True, ts_ns=100)
    store.set_status("m1", online=True, ts_ns=200)
    store.set_status("m1", online=False, ts_ns=300, error="timeout")
    rec = store.device("m1")
    assert (rec.online, rec.last_seen_ns, rec.first_seen_ns, rec.last_error) == (False, 200, 100, "timeout")


def test_status_of_unknown_device_is_an_error(store):
    with pytest.raises(StoreError, match="unknown device"):
        store.set_status("ghost", online=True, ts_ns=1)


def test_identity_change_records_event_with_both(store):
    store.upsert_device(spec())
    a = IdentityEvidence(protocol="opcua", application_uri="urn:a", details={"build": "1"})
    a2 = IdentityEvidence(protocol="opcua", application_uri="urn:a", details={"build": "2"})
    b = IdentityEvidence(protocol="opcua", application_uri="urn:b")
    store.set_identity("m1", a, 1)
    store.set_identity("m1", a2, 2)       # same fingerprint: no event
    assert store.events(kind="identity_changed") == []
    store.set_identity("m1", b, 3)
    (ev,) = store.events(kind="identity_changed")
    assert (ev.device_id, ev.ts_ns) == ("m1", 3)
    assert ev.data["old"] == a2.to_dict() and ev.data["new"] == b.to_dict()
    assert ev.data["old_fingerprint"] == "opcua:urn:a"
    assert store.device("m1").identity == b


def test_events_filters_and_order(store):
    store.add_event("connected", 10, "m1", {"endpoint": "x"})
    store.add_event("connected", 20, "m2")
    store.add_event("disconnected", 30, "m1")
    assert [e.ts_ns for e in store.events()] == [10, 20, 30]
    assert [e.kind for e in store.events(device_id="m1")] == ["connected", "disconnected"]
    assert [e.ts_ns for e in store.events(kind="connected", since_ns=15)] == [20]
    assert [e.ts_ns for e in store.events(limit=2, newest_first=True)] == [30, 20]
    assert store.events(device_id="m1")[0].data == {"endpoint": "x"}


def test_readonly_reader_sees_writes_and_cannot_write(store_path):
    writer = Store.open(store_path)
    reader = Store.open(store_path, readonly=True)
    try:
        writer.write_samples([Sample("m1", "a", 1, 1.0)])
        assert reader.sample_count() == 1
        with pytest.raises(StoreError, match="read-only"):
            reader.write_samples([Sample("m1", "a", 2, 1.0)])
    finally:
        reader.close()
        writer.close()


def test_rollup_day_round_trip_and_summaries(store):
    arr = empty_day()
    arr[F["running_s"], :10] = 60
    arr[F["count_total"], 5] = 42
    arr[F["samples"], :3] = 4
    arr[F["energy_kwh"], 7] = 1.5
    day = dt.date(2024, 3, 10)
    store.write_rollup_day("m1", day, arr)
    store.write_rollup_day("m2", day + dt.timedelta(days=1), empty_day())
    np.testing.assert_array_equal(store.rollup_day("m1", day), arr)
    assert store.rollup_day("m1", day + dt.timedelta(days=1)) is None
    (summ,) = store.rollup_day_summaries(device_ids=["m1"])
    assert summ == {"device_id": "m1", "day": day, "layout_version": LAYOUT_VERSION, "running_s": 600.0,
                    "count_total": 42.0, "count_good": 0.0, "energy_kwh": 1.5, "samples": 12,
                    "minutes_with_data": 3}
    assert [(d, k) for d, k, _ in store.rollup_days()] == [("m1", day), ("m2", day + dt.timedelta(days=1))]
    assert [d for d, _, _ in store.rollup_days(day_from=day + dt.timedelta(days=1))] == ["m2"]


def test_rollup_days_pages_through_many_records(store):
    day = dt.date(2024, 1, 1)
    arr = empty_day()
    for i in range(600):
        arr[F["samples"], 0] = i
        store.write_rollup_day(f"d{i:04d}", day, arr)
    got = list(store.rollup_days(device_ids=[f"d{i:04d}" for i in range(0, 600, 1)]))
    assert [int(a[F["samples"], 0]) for _, _, a in got] == list(range(600))


def test_write_rollup_day_checks_shape(store):
    with pytest.raises(ValueError, match="shape"):
        store.write_rollup_day("m1", dt.date(2024, 1, 1), np.zeros((3, 1440)))


def test_concurrent_writers_and_readers_in_threads(store):
    errors: list[BaseException] = []

    def write(dev: str) -> None:
        try:
            for k in range(20):
                store.write_samples([Sample(dev, "a", k * 100 + j, float(j)) for j in range(50)])
        except BaseException as exc:   # pragma: no cover - reported below
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(50):
                store.sample_count()
                store.events()
        except BaseException as exc:   # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"m{i}",)) for i in range(3)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.sample_count() == 3 * 20 * 50


def test_day_blob_from_an_older_layout_is_padded_and_a_newer_one_refused():
    import zlib

    from edge.rollup_codec import unpack_day

    short = np.arange(3 * 1440, dtype=np.float32).reshape(3, 1440)
    arr = unpack_day(zlib.compress(short.tobytes()), 1, "m1/old")
    assert arr.shape == (len(FIELDS), 1440)
    np.testing.assert_array_equal(arr[:3], short)
    assert not arr[3:].any()
    with pytest.raises(StoreVersionError, match="layout version 99"):
        unpack_day(zlib.compress(short.tobytes()), 99, "m1/new")
    with pytest.raises(StoreError, match="corrupt"):
        unpack_day(b"garbage", 1, "m1/bad")
