"""The evidence ledger inside the store (edge.store.ledger): entries written with the data they
cover, the chain and checkpoints as the contract defines them (recomputed here independently),
tampering named by verify_ledger, and a writer killed mid-stream leaving a consistent ledger."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge import evidence_key, migrations
from edge.evidence_key import EvidenceKey
from edge.model import DeviceSpec, IdentityEvidence, Sample, SignalSpec
from edge.store import Store
from edge.store.batch_digest import batch_digest
from edge.store.ledger import GENESIS, NS_PER_HOUR, fold

from .timebase import DAY0_NS, DAY_NS, MIN_NS, S_NS

ROOT = Path(__file__).resolve().parents[2]
NOW = DAY0_NS + 5 * DAY_NS          # "now" for checkpoints: every day before DAY0+4 is due


def spec(device_id: str = "m1", **kw) -> DeviceSpec:
    base = dict(id=device_id, name=f"Machine {device_id}", protocol="modbus",
                connection={"host": "127.0.0.1"},
                signals=(SignalSpec("count_total"), SignalSpec("state")), profile="press",
                line="L1", location="hall A", ideal_cycle_s=12.5)
    base.update(kw)
    return DeviceSpec(**base)


def minute_samples(device_id: str, start_ns: int, minutes: int, first: int = 0) -> list[Sample]:
    return [Sample(device_id, "count_total", start_ns + i * MIN_NS, float(first + i))
            for i in range(minutes)]


def canon(x) -> bytes:
    # The contract's encoding, written out again so the test does not trust the code under test.
    return json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def rows(path: Path, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def execute(path: Path, sql: str, params=()) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def key(tmp_path: Path) -> EvidenceKey:
    return EvidenceKey.load_or_create(tmp_path)


@pytest.fixture
def filled(store_path: Path, key: EvidenceKey) -> Store:
    """Two devices with identities, three days of samples rolled up, one checkpoint."""
    s = Store.open(store_path)
    for d in ("m1", "m2"):
        s.upsert_device(spec(d))
        s.set_identity(d, IdentityEvidence("modbus", serial_number=f"SN-{d}"), DAY0_NS)
        for day in range(3):
            s.write_samples(minute_samples(d, DAY0_NS + day * DAY_NS, 1440, day * 1440))
    s.roll_up(DAY0_NS + 4 * DAY_NS)
    s.checkpoint(key, NOW)
    yield s
    s.close()


# ---------------------------------------------------------------------- the chain
def test_the_chain_recomputes_by_the_contract_and_verifies(filled, store_path, key):
    prev = GENESIS
    ledger = rows(store_path, "SELECT seq, kind, captured_ns, device_id, body, hash FROM ledger "
                              "ORDER BY seq")
    for seq, kind, captured, device_id, body, h in ledger:
        prev = hashlib.sha256(prev + canon([seq, kind, captured, device_id, json.loads(body)])).digest()
        assert prev == h, seq
        assert canon(json.loads(body)).decode() == body
    assert [r[0] for r in ledger] == list(range(1, len(ledger) + 1))
    kinds = [r[1] for r in ledger]
    assert kinds.count("device") == 2 and kinds.count("identity") == 2
    assert kinds.count("samples") == 1 and kinds.count("rollup") == 6
    assert filled.ledger_head() == (len(ledger), prev)

    (cp,) = filled.checkpoints()
    body = json.loads(cp.body_text)
    assert body["head_seq"] == len(ledger) and body["head_hash"] == prev.hex()
    assert body["prev_checkpoint_hash"] == "0" * 64 and body["format"] == 1
    assert body["counts"] == {"entries": len(ledger), "devices": 2, "samples_total": 6 * 1440,
                              "sealed_days": 6}
    assert body["key"] == key.fingerprint == cp.key_fingerprint
    check = filled.verify_ledger()
    assert check.ok, check.problems
    assert (check.entries, check.checkpoints) == (len(ledger), 1)


def test_checkpoints_chain_to_each_other(filled, key):
    filled.write_samples(minute_samples("m1", DAY0_NS + 4 * DAY_NS, 10))
    second = filled.checkpoint(key, NOW + 300 * S_NS)
    first = filled.checkpoints()[0]
    assert second.body["prev_checkpoint_hash"] == hashlib.sha256(first.body_bytes).hexdigest()
    assert second.body["counts"]["samples_total"] == 6 * 1440 + 10
    assert filled.last_checkpoint() == second
    assert filled.verify_ledger().ok


def test_a_device_entry_only_when_new_or_changed(store):
    store.upsert_device(spec())
    store.upsert_device(spec())
    # Reordered signals are the same device.
    store.upsert_device(spec(signals=(SignalSpec("state"), SignalSpec("count_total"))))
    assert [e.kind for e in store.ledger_entries()] == ["device"]
    store.upsert_device(spec(name="Press 1"))
    entries = store.ledger_entries()
    assert [e.kind for e in entries] == ["device", "device"]
    assert entries[1].body == {"spec": {"id": "m1", "name": "Press 1", "protocol": "modbus",
                                        "line": "L1", "location": "hall A", "profile": "press",
                                        "ideal_cycle_s": 12.5,
                                        "signals": ["count_total", "state"]}}
    assert entries[1].device_id == "m1"


def test_identity_observations_and_changes(store):
    store.upsert_device(spec())
    a = IdentityEvidence("modbus", serial_number="A")
    store.set_identity("m1", a, 1)
    store.set_identity("m1", a, 2)                 # the same again: no entry
    store.set_identity("m1", IdentityEvidence("modbus", serial_number="B"), 3)
    kinds = [(e.kind, e.body) for e in store.ledger_entries()][1:]
    assert kinds == [
        ("identity", {"fingerprint": "modbus:A", "evidence": a.to_dict()}),
        ("identity", {"fingerprint": "modbus:B",
                      "evidence": IdentityEvidence("modbus", serial_number="B").to_dict()}),
        ("identity_change", {"old": "modbus:A", "new": "modbus:B"}),
    ]
    # The event the registry records and the ledger entry say the same thing.
    assert len(store.events(kind="identity_changed")) == 1


# ---------------------------------------------------------------------- samples and capture
def test_batches_fold_into_pending_and_become_one_entry_per_checkpoint(store, store_path, key):
    batches = [minute_samples("m1", DAY0_NS + k * 100 * MIN_NS, 100, k * 100) for k in range(3)]
    for b in batches:
        store.write_samples(b)
    acc = GENESIS
    for b in batches:
        # batch_digest itself is pinned against the documented encoding in test_batch_digest.
        acc = hashlib.sha256(acc + batch_digest(b)).digest()
    assert rows(store_path, "SELECT batches, samples, acc FROM ledger_pending") == [(3, 300, acc)]

    store.checkpoint(key, NOW)
    (entry,) = [e for e in store.ledger_entries() if e.kind == "samples"]
    assert entry.body == {"batches": 3, "samples": 300, "acc": acc.hex()}
    assert entry.device_id is None and entry.captured_ns == NOW
    assert rows(store_path, "SELECT batches, samples, acc FROM ledger_pending") == [(0, 0, GENESIS)]
    store.checkpoint(key, NOW + 1)       # nothing new: no samples entry
    assert [e.kind for e in store.ledger_entries()].count("samples") == 1


def test_capture_stats_per_source_hour_count_what_is_backfilled(store):
    live_ts = time.time_ns() - 10 * S_NS
    old_ts = live_ts - 2 * 3600 * S_NS        # older than backfill_after_s (3600 s) at capture
    before = time.time_ns()
    store.write_samples([Sample("m1", "x", live_ts, 1.0), Sample("m1", "y", live_ts, 2.0),
                         Sample("m1", "x", old_ts, 3.0)])
    after = time.time_ns()
    store.write_samples([Sample("m1", "x", live_ts + 1, 4.0)])
    hours = store.capture_hours("m1")
    assert set(hours) == {live_ts // NS_PER_HOUR, old_ts // NS_PER_HOUR} or \
        set(hours) == {old_ts // NS_PER_HOUR, live_ts // NS_PER_HOUR, (live_ts + 1) // NS_PER_HOUR}
    old = hours[old_ts // NS_PER_HOUR]
    assert (old.samples, old.backfilled) == (1, 1)
    assert before <= old.first_capture_ns == old.last_capture_ns <= after
    live = [h for hour, h in hours.items() if hour != old_ts // NS_PER_HOUR]
    assert sum(h.samples for h in live) == 3 and sum(h.backfilled for h in live) == 0
    assert store.capture_hours("other") == {}


def test_backfill_threshold_is_the_store_setting(tmp_path):
    with Store.open(tmp_path / "s.db", backfill_after_s=60) as s:
        ts = time.time_ns() - 120 * S_NS
        s.write_samples([Sample("m1", "x", ts, 1.0)])
        assert s.capture_hours("m1")[ts // NS_PER_HOUR].backfilled == 1


# ---------------------------------------------------------------------- rollup seals
def test_a_day_is_sealed_only_when_rolled_past_and_old_enough(store, key):
    store.upsert_device(spec())
    store.write_samples(minute_samples("m1", DAY0_NS, 2 * 1440))
    store.roll_up(DAY0_NS + DAY_NS // 2)        # day 0 only half rolled up
    store.checkpoint(key, DAY0_NS + 2 * DAY_NS)
    assert [e.kind for e in store.ledger_entries()].count("rollup") == 0
    store.roll_up(DAY0_NS + 2 * DAY_NS)
    # Day 1 ended 899 s ago: day 0 is due, day 1 not yet.
    store.checkpoint(key, DAY0_NS + 2 * DAY_NS + 899 * S_NS, seal_after_s=900)
    seals = [e for e in store.ledger_entries() if e.kind == "rollup"]
    assert [e.body["day"] for e in seals] == ["2024-03-10"]
    store.checkpoint(key, DAY0_NS + 2 * DAY_NS + 901 * S_NS, seal_after_s=900)
    seals = [e for e in store.ledger_entries() if e.kind == "rollup"]
    assert [e.body["day"] for e in seals] == ["2024-03-10", "2024-03-11"]


def test_a_seal_describes_the_stored_rollup_and_its_capture(filled, store_path):
    seal = next(e for e in filled.ledger_entries() if e.kind == "rollup" and e.device_id == "m1")
    (data, minutes), = rows(store_path, "SELECT data, minutes_with_data FROM rollup_days "
                                        "WHERE device_id = 'm1' AND day = ?", (seal.body["day"],))
    assert seal.body["sha256"] == hashlib.sha256(data).hexdigest()
    assert seal.body["revision"] == 1 and seal.body["minutes"] == minutes
    # The source time (2024) is years before the capture: all of it is backfilled.
    assert seal.body["samples"] == seal.body["backfilled"] == 1440
    assert seal.body["first_capture_ns"] <= seal.body["last_capture_ns"]


def test_a_late_sample_in_a_sealed_day_reseals_it(filled, key, store_path):
    before = [e for e in filled.ledger_entries() if e.kind == "rollup"]
    # A redelivered reading with another value: the counter's increase in that day changes.
    filled.write_samples([Sample("m1", "count_total", DAY0_NS + 600 * MIN_NS, 700.0)])
    filled.roll_up(DAY0_NS + 4 * DAY_NS)
    filled.checkpoint(key, NOW + 300 * S_NS)
    after = [e for e in filled.ledger_entries() if e.kind == "rollup"][len(before):]
    assert [(e.device_id, e.body["day"], e.body["revision"]) for e in after] == \
        [("m1", "2024-03-10", 2)]
    old = next(e for e in before if e.device_id == "m1" and e.body["day"] == "2024-03-10")
    assert after[0].body["sha256"] != old.body["sha256"]
    assert rows(store_path, "SELECT revision FROM ledger_seals WHERE device_id = 'm1' "
                            "AND day = '2024-03-10'") == [(2,)]
    assert filled.verify_ledger().ok
    filled.checkpoint(key, NOW + 600 * S_NS)        # nothing changed: no new seal
    assert len([e for e in filled.ledger_entries() if e.kind == "rollup"]) == len(before) + 1


def test_a_day_caught_mid_roll_up_is_resealed_once_final(filled, key):
    """A day updated, then made dirty again by a redelivered sample before a checkpoint: the
    roll-up that finishes it writes nothing new (same minutes), and the day must still be
    resealed as stored."""
    seals = len([e for e in filled.ledger_entries() if e.kind == "rollup"])
    late = Sample("m1", "count_total", DAY0_NS + 600 * MIN_NS, 700.0)
    filled.write_samples([late])
    filled.roll_up(DAY0_NS + 4 * DAY_NS)          # the day's record changes here
    filled.write_samples([late])                  # the same again: dirty, nothing will change
    filled.checkpoint(key, NOW + 300 * S_NS)      # not final: not sealed now
    assert len([e for e in filled.ledger_entries() if e.kind == "rollup"]) == seals
    filled.roll_up(DAY0_NS + 4 * DAY_NS)
    filled.checkpoint(key, NOW + 600 * S_NS)
    last = filled.ledger_entries()[-1]
    assert (last.kind, last.body["day"], last.body["revision"]) == ("rollup", "2024-03-10", 2)
    assert filled.verify_ledger().ok


def test_a_change_while_no_gateway_ran_is_resealed_at_the_next_start(filled, key, store_path):
    """The first checkpoint after an open compares every sealed day, not only recent updates."""
    filled.close()
    with Store.open(store_path, ledger_hooks=False) as s:      # a writer without the ledger
        s.write_samples([Sample("m2", "count_total", DAY0_NS + DAY_NS + 60 * MIN_NS, 2000.0)])
        s.roll_up(DAY0_NS + 4 * DAY_NS)
    # Make the change look older than anything a scan of recent updates would look at.
    execute(store_path, "UPDATE rollup_days SET updated_ns = 1")
    with Store.open(store_path) as s:
        s.checkpoint(key, NOW + 300 * S_NS)
        last = s.ledger_entries()[-1]
        assert (last.kind, last.device_id, last.body["day"], last.body["revision"]) == \
            ("rollup", "m2", "2024-03-11", 2)


# ---------------------------------------------------------------------- tampering
def test_an_edited_rollup_is_named_by_its_seal(filled, store_path):
    seal = next(e for e in filled.ledger_entries() if e.kind == "rollup" and e.device_id == "m2")
    execute(store_path, "UPDATE rollup_days SET data = data || x'00' WHERE device_id = 'm2' "
                        "AND day = ?", (seal.body["day"],))
    check = filled.verify_ledger()
    assert check.seqs() == {seal.seq}
    assert "m2" in str(check.problems[0]) and "edited" in str(check.problems[0])


def test_a_removed_rollup_day_is_named(filled, store_path):
    seal = next(e for e in filled.ledger_entries() if e.kind == "rollup")
    execute(store_path, "DELETE FROM rollup_days WHERE device_id = ? AND day = ?",
            (seal.device_id, seal.body["day"]))
    check = filled.verify_ledger()
    assert check.seqs() == {seal.seq} and "gone" in str(check.problems[0])


def test_an_edited_ledger_body_is_named(filled, store_path):
    target = next(e for e in filled.ledger_entries() if e.kind == "samples")
    forged = dict(target.body, samples=target.body["samples"] * 2)
    execute(store_path, "UPDATE ledger SET body = ? WHERE seq = ?",
            (canon(forged).decode(), target.seq))
    assert filled.verify_ledger().seqs() == {target.seq}


def test_an_edited_body_with_its_hash_recomputed_is_caught_by_the_next_entry_and_checkpoint(
        filled, store_path):
    target = next(e for e in filled.ledger_entries() if e.kind == "samples")
    prev = filled.ledger_entries(target.seq - 1, target.seq - 1)[0].hash
    forged = dict(target.body, samples=1)
    h = hashlib.sha256(prev + canon([target.seq, target.kind, target.captured_ns, None,
                                     forged])).digest()
    execute(store_path, "UPDATE ledger SET body = ?, hash = ? WHERE seq = ?",
            (canon(forged).decode(), h, target.seq))
    assert target.seq + 1 in filled.verify_ledger().seqs()


def test_a_deleted_ledger_row_is_named(filled, store_path):
    victim = filled.ledger_entries()[3]
    execute(store_path, "DELETE FROM ledger WHERE seq = ?", (victim.seq,))
    check = filled.verify_ledger()
    assert check.seqs() == {victim.seq + 1}
    assert f"seq {victim.seq} is missing" in str(check.problems[0])


def test_reordered_entries_are_named(filled, store_path):
    a, b = filled.ledger_entries()[1:3]
    conn = sqlite3.connect(store_path)
    for e, other in ((a, b), (b, a)):
        conn.execute("UPDATE ledger SET kind = ?, captured_ns = ?, device_id = ?, body = ?, "
                     "hash = ? WHERE seq = ?", (other.kind, other.captured_ns, other.device_id,
                                                other.body_text, other.hash, e.seq))
    conn.commit()
    conn.close()
    assert {a.seq, b.seq} <= filled.verify_ledger().seqs()


def test_a_truncated_chain_is_named_by_the_checkpoint_that_signed_it(filled, store_path):
    head, _ = filled.ledger_head()
    execute(store_path, "DELETE FROM ledger WHERE seq >= ?", (head - 1,))
    check = filled.verify_ledger()
    assert check.seqs() == {head}
    assert "checkpoint 1" in str(check.problems[0]) and "truncated" in str(check.problems[0])


def test_a_device_inserted_in_sql_is_named(filled, store_path):
    execute(store_path, "INSERT INTO devices (id, name, protocol) VALUES ('ghost', 'G', 'modbus')")
    check = filled.verify_ledger()
    assert len(check.problems) == 1 and "device ghost has no ledger entry" in str(check.problems[0])


# ---------------------------------------------------------------------- key and signatures
def test_the_key_file_is_owner_only_and_the_same_after_a_restart(tmp_path):
    first = EvidenceKey.load_or_create(tmp_path / "data")
    mode = stat.S_IMODE(os.stat(tmp_path / "data" / evidence_key.KEY_FILE).st_mode)
    assert mode == 0o600
    again = EvidenceKey.load_or_create(tmp_path / "data")
    assert again.fingerprint == first.fingerprint
    assert first.fingerprint.startswith("ed25519:") and len(first.fingerprint) == 8 + 64
    pub = evidence_key.load_public_pem((tmp_path / "data" / evidence_key.PUB_FILE).read_bytes())
    raw = evidence_key.public_raw(pub)
    assert first.fingerprint == "ed25519:" + hashlib.sha256(raw).hexdigest()
    assert evidence_key.display_fingerprint(first.fingerprint).split(" ")[0] == \
        "ed25519:" + first.fingerprint[8:12]


def test_another_name_keeps_another_key(tmp_path):
    gateway = EvidenceKey.load_or_create(tmp_path)
    witness = EvidenceKey.load_or_create(tmp_path, name="witness")
    assert witness.fingerprint != gateway.fingerprint
    assert (tmp_path / "witness.key").exists() and (tmp_path / "witness.pub").exists()
    assert EvidenceKey.load_or_create(tmp_path, name="witness").fingerprint == witness.fingerprint


def test_an_unusable_key_file_is_a_clear_error(tmp_path):
    (tmp_path / evidence_key.KEY_FILE).write_text("not a key")
    with pytest.raises(evidence_key.EvidenceKeyError, match="evidence.key"):
        EvidenceKey.load_or_create(tmp_path)


def test_a_checkpoint_verifies_with_its_key_and_not_with_another(filled, key):
    cp = filled.last_checkpoint()
    assert evidence_key.verify(key.public_pem, cp.signature, cp.body_bytes)
    other = EvidenceKey.generate()
    assert not evidence_key.verify(other.public_pem, cp.signature, cp.body_bytes)
    assert not evidence_key.verify(key.public_key, cp.signature, cp.body_bytes + b" ")
    check = filled.verify_ledger(other.public_pem)
    assert not check.ok and any("signature does not verify" in str(p) for p in check.problems)


def test_a_checkpoint_re_signed_with_another_key_is_named(filled, store_path):
    cp = filled.last_checkpoint()
    other = EvidenceKey.generate()
    execute(store_path, "UPDATE checkpoints SET signature = ? WHERE seq = ?",
            (other.sign(cp.body_bytes), cp.seq))
    check = filled.verify_ledger()      # with the evidence.pub next to the store
    assert [str(p) for p in check.problems] == [
        f"checkpoint 1: signature does not verify with key {filled.checkpoints()[0].key_fingerprint} "
        "(re-signed with another key, or edited)"]


def test_a_failed_checkpoint_leaves_the_chain_contiguous(filled, key):
    """The checkpoint's entries roll back with it: the next ones must not skip their seqs."""
    class Broken:
        fingerprint = key.fingerprint

        def sign(self, data: bytes) -> bytes:
            raise OSError("key store unavailable")

    head = filled.ledger_head()
    filled.write_samples(minute_samples("m1", DAY0_NS + 4 * DAY_NS, 5))
    with pytest.raises(OSError):
        filled.checkpoint(Broken(), NOW + 1)
    assert filled.ledger_head() == head
    filled.checkpoint(key, NOW + 2)
    filled.upsert_device(spec("m3"))
    assert filled.verify_ledger().ok


def test_receipts_are_kept(filled):
    body = {"format": 1, "checkpoint_sha256": filled.last_checkpoint().body_sha256}
    filled.add_receipt(1, "ed25519:" + "ab" * 32, body, b"sig", received_ns=5)
    (r,) = filled.receipts()
    assert (r.checkpoint_seq, r.body, r.signature, r.received_ns) == (1, body, b"sig", 5)
    assert r.body_text == canon(body).decode()
    assert filled.receipts(checkpoint_seq=2) == []


def test_a_reader_in_another_process_sees_the_ledger(filled, store_path):
    with Store.open(store_path, readonly=True) as r:
        assert r.ledger_head() == filled.ledger_head()
        assert r.capture_hours("m1") == filled.capture_hours("m1")
        assert r.verify_ledger().ok


# ---------------------------------------------------------------------- old stores
def test_a_store_from_before_the_ledger_migrates_with_an_empty_ledger(store_path, key,
                                                                       monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:4])
        with Store.open(store_path, ledger_hooks=False) as old:
            old.upsert_device(spec())
            old.write_samples(minute_samples("m1", DAY0_NS, 1440))
            old.roll_up(DAY0_NS + 2 * DAY_NS)
        assert rows(store_path, "PRAGMA user_version") == [(4,)]
    with Store.open(store_path) as s:
        assert s.ledger_head() == (0, GENESIS)
        assert s.capture_hours("m1") == {}
        s.upsert_device(spec())          # the gateway registers its devices at every start
        s.checkpoint(key, NOW)
        seal = s.ledger_entries()[-1]
        # Rolled before the ledger: sealed as stored, with no capture record behind it.
        assert seal.kind == "rollup" and seal.body["samples"] == 0
        assert seal.body["first_capture_ns"] is None
        assert s.verify_ledger().ok


# ---------------------------------------------------------------------- crash
BATCH = 200


def writer_batch(k: int) -> list[Sample]:
    return [Sample("m1", "count_total", DAY0_NS + (k * BATCH + i) * S_NS, float(k * BATCH + i))
            for i in range(BATCH)]


def writer_main(path: str) -> None:
    """Run in a subprocess by the crash test: writes batches (a checkpoint every 25) until killed."""
    store = Store.open(path)
    key = EvidenceKey.load_or_create(Path(path).parent)
    store.upsert_device(spec())
    k = 0
    while True:
        store.write_samples(writer_batch(k))
        k += 1
        if k % 25 == 0:
            store.checkpoint(key)


def test_kill_9_while_writing_leaves_a_verifying_chain_and_a_consistent_accumulator(store_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c",
         f"from tests.edge.test_ledger import writer_main; writer_main({str(store_path)!r})"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                done = rows(store_path, "SELECT (SELECT count(*) FROM checkpoints), batches "
                                        "FROM ledger_pending")
            except sqlite3.OperationalError:      # not created yet
                done = []
            if done and done[0][0] >= 2 and done[0][1] > 0:
                break
            assert time.monotonic() < deadline, "the writer did not get going"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()

    with Store.open(store_path) as s:
        check = s.verify_ledger()
        assert check.ok, check.problems
        committed = s.sample_count()
        assert committed % BATCH == 0       # a batch is committed whole or not at all
        n = committed // BATCH
        # Every committed batch is in exactly one samples entry or the pending accumulator, in
        # order, and each accumulator folds exactly its batches.
        k = 0
        for e in (e for e in s.ledger_entries() if e.kind == "samples"):
            acc = GENESIS
            for j in range(k, k + e.body["batches"]):
                acc = fold(acc, batch_digest(writer_batch(j)))
            assert e.body == {"batches": e.body["batches"], "samples": e.body["batches"] * BATCH,
                              "acc": acc.hex()}
            k += e.body["batches"]
        (batches, samples, pending_acc), = rows(store_path, "SELECT batches, samples, acc "
                                                            "FROM ledger_pending")
        assert k + batches == n and samples == batches * BATCH
        acc = GENESIS
        for j in range(k, n):
            acc = fold(acc, batch_digest(writer_batch(j)))
        assert pending_acc == acc
        hours = s.capture_hours("m1")
        assert sum(h.samples for h in hours.values()) == committed


def test_capture_stats_of_a_batch_of_many_devices_and_hours(store):
    # 150 devices (more rows than one capture_stats statement takes) and one device whose
    # part of the batch spans three hours, live and backfilled.
    now = time.time_ns()
    live = now - 10 * S_NS
    batch = [Sample(f"d{i:03d}", "x", live, float(i)) for i in range(150)]
    span = [now - 3 * 3600 * S_NS, now - 2 * 3600 * S_NS, live, live + 1]
    batch += [Sample("d007", "y", t, 1.0) for t in span]
    store.write_samples(batch)
    store.write_samples(batch)          # redelivered: counted again
    for i in range(150):
        hours = store.capture_hours(f"d{i:03d}")
        if i != 7:
            assert [(h, c.samples, c.backfilled) for h, c in hours.items()] == [
                (live // NS_PER_HOUR, 2, 0)]
    expected: dict[int, list[int]] = {}
    for t in [live] + span:
        e = expected.setdefault(t // NS_PER_HOUR, [0, 0])
        e[0] += 2
        e[1] += 2 if t < now - 3600 * S_NS else 0
    assert {h: [c.samples, c.backfilled] for h, c in store.capture_hours("d007").items()} \
        == expected
