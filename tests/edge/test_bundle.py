"""The bundle check against a tampering matrix: each alteration a supplier could make to an
exported bundle is detected and named (file, device/day, seq or checkpoint). Stores are real
(edge.store with its ledger); edits are made like a careful forger would, recomputing the
manifest's digests (tests/edge/bundle_factory.py)."""
from __future__ import annotations

import datetime as dt
import json
import zipfile

import numpy as np
import pytest

from edge.bundle import Bundle, BundleError, CheckOptions, check_path, export_bundle
from edge.bundle.format import (CAPTURE_STATS, CHECKPOINTS, DEVICES, LEDGER, MANIFEST,
                                ROLLUP_BLOBS)
from edge.evidence_key import EvidenceKey
from edge.model import IdentityEvidence, Sample
from edge.rollup_codec import pack_day, unpack_day
from edge.rollup_layout import F
from edge.store import Store
from tests.edge.bundle_factory import (DAY0, DAY0_NS, DAY_NS, HOUR_NS, MIN_NS, Members, export,
                                       forge_chain, make_store, receipt_for, spec)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def bundle(made, tmp_path_factory):
    return export(made, tmp_path_factory.mktemp("bundle") / "bundle.zip")


def codes(result) -> set[str]:
    return {p.code for p in result.problems}


def named(result, code: str) -> list[str]:
    return [p.where for p in result.problems if p.code == code]


def tampered(bundle, tmp_path, edit, **kw):
    m = Members(bundle)
    edit(m)
    return str(m.write(tmp_path / "tampered.zip", **kw))


def test_an_exported_bundle_checks_intact_with_its_key(made, bundle):
    r = check_path(str(bundle), CheckOptions(key=made.key.fingerprint))
    assert r.intact, r.problems
    assert r.key == made.key.fingerprint and r.key_checked
    assert r.checkpoints == 3
    # 2 device + 2 identity entries, 3 samples digests, 6 sealed device-days
    assert r.entries == 13 and r.signed_seq == 13
    with Bundle.open(bundle) as b:
        assert b.manifest["window"] == {"from": "2024-03-10", "to": "2024-03-12"}
        assert len(b.rollup_refs()) == 6


def test_the_fingerprint_may_be_given_as_displayed(made, bundle):
    spaced = "ED25519:" + " ".join(made.key.fingerprint[8:][i:i + 4] for i in range(0, 64, 4))
    assert check_path(str(bundle), CheckOptions(key=spaced)).intact


def test_an_edited_value_is_named_by_device_and_day(bundle, tmp_path):
    def edit(m):
        items = m.rollups()
        for i, (ref, blob) in enumerate(items):
            if (ref["device_id"], ref["day"]) == ("m1", "2024-03-11"):
                arr = unpack_day(blob, ref["layout_version"])
                arr[F["count_total"], 600] += 50
                items[i] = (ref, pack_day(arr))
        m.set_rollups(items)
    r = check_path(tampered(bundle, tmp_path, edit))
    assert named(r, "rollup_edited") == ["rollup m1/2024-03-11"]
    assert "sealed entry" in r.problems[0].message


def test_an_edit_without_fixing_the_manifest_names_the_file(bundle, tmp_path):
    def edit(m):
        blob = bytearray(m.data[ROLLUP_BLOBS])
        blob[100] ^= 0xFF
        m.data[ROLLUP_BLOBS] = bytes(blob)
    r = check_path(tampered(bundle, tmp_path, edit, fix_manifest=False))
    assert named(r, "digest") == [ROLLUP_BLOBS]


def test_a_removed_day_is_named(bundle, tmp_path):
    def edit(m):
        m.set_rollups([(r, b) for r, b in m.rollups()
                       if (r["device_id"], r["day"]) != ("m2", "2024-03-11")])
    r = check_path(tampered(bundle, tmp_path, edit))
    assert named(r, "day_removed") == ["rollup m2/2024-03-11"]


def test_an_inserted_device_is_named(bundle, tmp_path):
    def edit(m):
        devices = m.json(DEVICES)
        clone = {**devices[0], "id": "m9", "name": "machine m9",
                 "identity": {**devices[0]["identity"], "serial_number": "SN-m9"}}
        m.set_json(DEVICES, devices + [clone])
        items = m.rollups()
        m.set_rollups(items + [({**r, "device_id": "m9"}, b) for r, b in items
                               if r["device_id"] == "m1"])
    r = check_path(tampered(bundle, tmp_path, edit))
    assert named(r, "device_inserted") == ["device m9"]
    assert sorted(named(r, "rollup_unsealed")) == [f"rollup m9/2024-03-{d}" for d in (10, 11, 12)]


def test_a_removed_device_is_named(bundle, tmp_path):
    def edit(m):
        m.set_json(DEVICES, [d for d in m.json(DEVICES) if d["id"] != "m2"])
        m.set_rollups([(r, b) for r, b in m.rollups() if r["device_id"] != "m2"])
    r = check_path(tampered(bundle, tmp_path, edit))
    assert named(r, "device_removed") == ["device m2"]
    assert len(named(r, "day_removed")) == 3


def test_an_edited_device_and_identity_are_named(bundle, tmp_path):
    def edit(m):
        devices = m.json(DEVICES)
        devices[0]["ideal_cycle_s"] = 5.0          # doubles its performance
        devices[1]["identity"]["serial_number"] = "SN-other"
        m.set_json(DEVICES, devices)
    r = check_path(tampered(bundle, tmp_path, edit))
    assert named(r, "device_edited") == ["device m1"]
    assert "ideal_cycle_s" in [p for p in r.problems if p.code == "device_edited"][0].message
    assert named(r, "identity_edited") == ["device m2"]


def test_reordered_entries_are_named(bundle, tmp_path):
    def edit(m):
        entries = m.lines(LEDGER)
        entries[5], entries[6] = entries[6], entries[5]
        m.set_lines(LEDGER, entries)
    r = check_path(tampered(bundle, tmp_path, edit))
    assert {"order", "chain"} <= codes(r)
    seq = r.problems[[p.code for p in r.problems].index("order")].where
    assert seq == f"{LEDGER} seq 6"


def test_an_edited_entry_is_named_by_seq(bundle, tmp_path):
    def edit(m):
        entries = m.lines(LEDGER)
        entries[4]["body"]["samples"] += 1           # seq 5, a samples digest
        m.set_lines(LEDGER, entries)
    r = check_path(tampered(bundle, tmp_path, edit))
    assert named(r, "entry_edited") == [f"{LEDGER} seq 5"]
    assert "chain" in codes(r)


def test_a_truncated_chain_is_named(bundle, tmp_path):
    def edit(m):
        m.set_lines(LEDGER, m.lines(LEDGER)[:-3])
    r = check_path(tampered(bundle, tmp_path, edit))
    assert named(r, "truncated") == [LEDGER]
    assert "ends at seq 10" in r.problems[0].message


def test_an_entry_removed_from_the_middle_is_named(bundle, tmp_path):
    def edit(m):
        entries = m.lines(LEDGER)
        m.set_lines(LEDGER, entries[:7] + entries[8:])
    r = check_path(tampered(bundle, tmp_path, edit))
    assert f"{LEDGER} seq 8–8" in named(r, "gap")


def test_a_checkpoint_resigned_with_another_key_is_named(bundle, tmp_path):
    other = EvidenceKey.generate()

    def edit(m):
        cps = m.lines(CHECKPOINTS)
        body = json.loads(cps[1]["body"])
        body["counts"]["devices"] = 40
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        cps[1].update(body=text, signature=other.sign(text.encode()).hex())
        m.set_lines(CHECKPOINTS, cps)
    r = check_path(tampered(bundle, tmp_path, edit))
    assert named(r, "signature") == ["checkpoint 2"]
    assert "checkpoint 3" in named(r, "checkpoint_chain")


def test_a_bundle_forged_whole_with_another_key_fails_the_expected_key(made, bundle, tmp_path):
    forger = EvidenceKey.generate()

    def edit(m):
        items = m.rollups()
        ref, blob = items[0]
        arr = unpack_day(blob, ref["layout_version"])
        arr[F["count_total"]] *= 2
        items[0] = (ref, pack_day(arr))
        m.set_rollups(items)
        forge_chain(m, forger)
    path = tampered(bundle, tmp_path, edit)
    # Consistent in itself: only the key the reviewer knows (or a witness) tells it apart.
    assert check_path(path).intact
    r = check_path(path, CheckOptions(key=made.key.fingerprint))
    assert codes(r) == {"key"}
    assert "re-signed with another key" in r.problems[0].message


def test_receipts_from_another_witness_and_a_clock_set_back_are_named(tmp_path):
    trusted, stranger = EvidenceKey.generate(), EvidenceKey.generate()
    month = 30 * DAY_NS
    made = make_store(tmp_path / "s")
    with Store.open(made.path) as store:
        for cp in store.checkpoints():
            witness = trusted if cp.seq < 3 else stranger
            receipt, sig = receipt_for(cp.body_text, made.key.fingerprint, witness,
                                       cp.wall_ns + month)
            store.add_receipt(cp.seq, witness.fingerprint, receipt, sig)
    bundle = export(made, tmp_path / "b.zip")
    r = check_path(str(bundle), CheckOptions(witness_keys=(trusted.public_pem,)))
    assert named(r, "witness") == ["receipts.jsonl"]
    assert stranger.fingerprint[8:12] in r.problems[0].message
    clock = [p for p in r.problems if p.code == "clock"]
    assert len(clock) == 1 and "set back by about" in clock[0].message
    assert "30.0 days" in clock[0].message
    assert r.witnessed == 2


def test_receipts_from_the_trusted_witness_on_time_are_intact(tmp_path):
    witness = EvidenceKey.generate()
    made = make_store(tmp_path / "s")
    with Store.open(made.path) as store:
        for cp in store.checkpoints():
            # the first reached the witness two days late (link down), the rest at once
            delay = 2 * DAY_NS if cp.seq == 1 else 3 * 10**9
            receipt, sig = receipt_for(cp.body_text, made.key.fingerprint, witness,
                                       cp.wall_ns + delay)
            store.add_receipt(cp.seq, witness.fingerprint, receipt, sig)
    r = check_path(str(export(made, tmp_path / "b.zip")),
                   CheckOptions(witness_keys=(witness.public_pem,)))
    assert r.intact, r.problems
    assert r.witnessed == 3
    assert [f.where for f in r.findings if f.code == "late_witness"] == ["checkpoints 1–1"]


def test_a_forged_receipt_signature_is_named(tmp_path):
    witness = EvidenceKey.generate()
    made = make_store(tmp_path / "s", days=1)
    with Store.open(made.path) as store:
        cp = store.checkpoints()[0]
        receipt, _ = receipt_for(cp.body_text, made.key.fingerprint, witness, cp.wall_ns)
        store.add_receipt(cp.seq, witness.fingerprint, receipt,
                          EvidenceKey.generate().sign(b"x"))
    r = check_path(str(export(made, tmp_path / "b.zip")),
                   CheckOptions(witness_keys=(witness.public_pem,)))
    assert "receipt for checkpoint 1" in named(r, "receipt")


def test_a_history_checkpointed_in_one_afternoon_is_named_backfilled(tmp_path):
    afternoon = DAY0_NS + 40 * DAY_NS + 14 * HOUR_NS
    made = make_store(tmp_path / "s", days=30, wall_ns=lambda k: afternoon + k * 5 * MIN_NS)
    r = check_path(str(export(made, tmp_path / "b.zip")))
    assert r.intact, r.problems          # a finding, not tampering
    spans = [f for f in r.findings if f.code == "backfilled" and f.where == "bundle"]
    assert len(spans) == 1 and "30 days" in spans[0].message and "2.4 h" in spans[0].message


def test_a_history_checkpointed_as_it_happened_is_not_named_backfilled(made, bundle):
    r = check_path(str(bundle))
    assert not [f for f in r.findings if f.where == "bundle"]


def test_edited_capture_statistics_are_named(bundle, tmp_path):
    def edit(m):
        rows = m.lines(CAPTURE_STATS)
        for row in rows:
            row["backfilled"] = 0                      # "all captured live"
        m.set_lines(CAPTURE_STATS, rows)
    r = check_path(tampered(bundle, tmp_path, edit))
    assert len(named(r, "capture_stats")) == 6
    assert f"{CAPTURE_STATS} m1/2024-03-10" in named(r, "capture_stats")


def test_entries_after_the_last_checkpoint_are_flagged_unsigned(tmp_path):
    made = make_store(tmp_path / "s")
    with Store.open(made.path) as store:
        store.upsert_device(spec("m3"))
    r = check_path(str(export(made, tmp_path / "b.zip")))
    assert r.intact, r.problems
    assert [f.where for f in r.findings if f.code == "unsigned"] == [f"{LEDGER} seq 14–14"]


def test_an_added_file_is_named(bundle, tmp_path):
    def edit(m):
        m.data["extra.json"] = b"{}"
    r = check_path(tampered(bundle, tmp_path, edit, fix_manifest=False))
    assert named(r, "file_added") == ["extra.json"]


def test_a_second_member_of_the_same_name_is_named(bundle, tmp_path):
    path = tmp_path / "twice.zip"
    path.write_bytes(bundle.read_bytes())
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr(DEVICES, "[]")
    r = check_path(str(path))
    assert DEVICES in named(r, "file_added")


@pytest.mark.parametrize("content, message", [
    (b"not a zip", "not a zip file"),
    (None, "has no manifest.json"),
    ({"format": "shangyun-bundle", "version": 99, "files": {}}, "format version 99"),
    ({"format": "other", "version": 1, "files": {}}, "not a shangyun bundle"),
])
def test_bad_input_is_a_bundle_error(tmp_path, content, message):
    path = tmp_path / "bad.zip"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("other.txt", "x")
            if content is not None:
                zf.writestr(MANIFEST, json.dumps(content))
    with pytest.raises(BundleError, match=message):
        check_path(str(path))


def test_rollups_read_from_the_bundle_are_the_stored_ones(made, bundle):
    with Store.open(made.path, readonly=True) as store, Bundle.open(bundle) as b:
        for ref in b.rollup_refs():
            want = store.rollup_day(ref.device_id, dt.date.fromisoformat(ref.day))
            got = unpack_day(b.rollup_blob(ref), ref.layout_version)
            np.testing.assert_array_equal(got, want)


def test_a_day_rerolled_after_the_last_checkpoint_is_warned_at_export_and_sealed_by_the_next(
        tmp_path):
    made = make_store(tmp_path / "s")
    with Store.open(made.path) as store:     # a late sample re-rolls a sealed day
        store.write_samples([Sample("m1", "count_total", DAY0_NS + DAY_NS + 17 * HOUR_NS, 999)])
        store.roll_up(DAY0_NS + 3 * DAY_NS + HOUR_NS)
    first = export_bundle(made.path, tmp_path / "b1.zip", made.days[0], made.days[-1])
    assert first.stale == ("m1/2024-03-11",)
    assert named(check_path(first.path), "rollup_edited") == ["rollup m1/2024-03-11"]
    with Store.open(made.path) as store:
        store.checkpoint(made.key, now_ns=made.walls[-1] + HOUR_NS)
    again = export_bundle(made.path, tmp_path / "b2.zip", made.days[0], made.days[-1])
    assert again.stale == ()
    assert check_path(again.path).intact


def test_a_member_that_does_not_parse_is_named_and_the_other_checks_still_run(bundle, tmp_path):
    def edit(m):
        m.data[LEDGER] = m.data[LEDGER][:-40] + b"}\n{not json\n"
        items = m.rollups()
        ref, blob = items[0]
        m.set_rollups([({**ref, "day": "someday"}, blob)] + items[1:])
    r = check_path(tampered(bundle, tmp_path, edit))
    assert "malformed" in codes(r)
    assert [p for p in r.problems if p.code == "malformed"][0].message.startswith(
        f"'{tmp_path / 'tampered.zip'}': {LEDGER} line")
    assert "rollup m1/someday" in named(r, "rollup_edited")


def test_a_later_window_is_chained_from_the_checkpoint_before_it(tmp_path):
    import dataclasses

    from tests.edge.bundle_factory import machine_day

    made = make_store(tmp_path / "s", days=2)
    with Store.open(made.path) as store:   # both devices renamed: their newest entries move on
        for dev in ("m1", "m2"):
            store.upsert_device(dataclasses.replace(spec(dev), name=f"press {dev}"))
            store.set_identity(dev, IdentityEvidence("opcua", serial_number=f"SN-{dev}",
                                                     application_uri=f"urn:{dev}",
                                                     details={"firmware": "2.1"}), DAY0_NS)
        for k in range(2, 6):
            day_ns = DAY0_NS + k * DAY_NS
            for dev in ("m1", "m2"):
                store.write_samples(machine_day(dev, day_ns))
            store.roll_up(day_ns + DAY_NS + HOUR_NS)
            store.checkpoint(made.key, now_ns=day_ns + DAY_NS + HOUR_NS)
        cp2 = store.checkpoints()[1]
    days = [DAY0 + dt.timedelta(days=k) for k in (4, 5)]
    out = export_bundle(made.path, tmp_path / "b.zip", days[0], days[-1])
    with Bundle.open(out.path) as b:
        assert b.manifest["ledger"]["anchor_checkpoint"] == 2
        assert b.manifest["ledger"]["first_seq"] == cp2.head_seq + 1
    r = check_path(out.path, CheckOptions(key=made.key.fingerprint))
    assert r.intact, r.problems

    def drop_anchor(m):
        m.set_lines(CHECKPOINTS, m.lines(CHECKPOINTS)[1:])
    r = check_path(tampered(out.path, tmp_path, drop_anchor))
    assert named(r, "chain")[0] == f"{LEDGER} seq {cp2.head_seq + 1}"
    assert "not anchored" in [p for p in r.problems if p.code == "chain"][0].message


def test_a_checkpoint_with_a_malformed_body_is_named(bundle, tmp_path):
    def edit(m):
        cps = m.lines(CHECKPOINTS)
        cps[0]["body"] = json.dumps({**json.loads(cps[0]["body"]), "head_hash": "zz"})
        cps[1]["body"] = "[1, 2]"
        m.set_lines(CHECKPOINTS, cps)
    r = check_path(tampered(bundle, tmp_path, edit))
    assert named(r, "checkpoint")[:2] == [f"{CHECKPOINTS} line 1", f"{CHECKPOINTS} line 2"]
