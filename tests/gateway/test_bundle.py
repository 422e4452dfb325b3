"""`shangyun export`, `shangyun bundle check` and `shangyun verify bundle.zip` as a reviewer runs
them: the demo's bundle checks clean and gives the store's verdict; an altered bundle is named
at the top of the report and fails; exit statuses 0 / 1 / 2."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from edge.rollup_codec import pack_day, unpack_day
from edge.rollup_layout import F
from edge.store import Store
from gateway.cli import main
from tests.edge.bundle_factory import Members, make_store
from tests.gateway.test_demo import HISTORY_DAYS


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The real demo (virtual factory, gateway, simulated history), then its bundle."""
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--machines", "6", "--duration", "15",
         "--history-days", str(HISTORY_DAYS), "--no-dashboard", "--dir", str(out / "d")],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    window = summary["verification"]["window"]
    bundle = out / "demo.zip"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "export", summary["store"], "--from",
         window["from"], "--to", window["to"], "-o", str(bundle), "--raw"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "export: rollups" in proc.stderr        # progress on stderr
    return summary["store"], bundle, window, out


def verify_json(capsys, source: str, window: dict, out) -> tuple[int, dict, str]:
    path = out / "report.json"
    code, text = run(capsys, "verify", source, "--item", "设备物联", "--amount", "9000",
                     "--from", window["from"], "--to", window["to"], "--accept-simulated",
                     "--quiet", "--json", str(path))
    return code, json.loads(path.read_text(encoding="utf-8")), text


def decision(report: dict) -> dict:
    return {"verdict": report["verdict"],
            "counted": report["voucher"]["counted_devices"],
            "devices": {d["id"]: (d["counted"], d["reasons"], d["days_active"])
                        for d in report["devices"]}}


@pytest.mark.slow
def test_the_demo_bundle_checks_clean_and_verifies_as_its_store(demo, capsys, tmp_path):
    store, bundle, window, _ = demo
    code, text = run(capsys, "bundle", "check", str(bundle))
    assert code == 0, text
    assert text.startswith("INTEGRITY: INTACT")
    # The simulated history was all captured during the demo's run: named without a marker.
    assert "captured long after the time it claims" in text
    code_store, from_store, _ = verify_json(capsys, store, window, tmp_path)
    code_bundle, from_bundle, text = verify_json(capsys, str(bundle), window, tmp_path)
    assert (code_bundle, decision(from_bundle)) == (code_store, decision(from_store))
    assert len(from_bundle["devices"]) == 6
    assert text.startswith("INTEGRITY: INTACT")
    assert from_bundle["integrity"]["intact"] is True


@pytest.mark.slow
def test_an_altered_demo_bundle_fails_and_says_so_first(demo, capsys, tmp_path):
    _, bundle, window, _ = demo
    m = Members(bundle)
    items = m.rollups()
    ref, blob = items[len(items) // 2]
    arr = unpack_day(blob, ref["layout_version"])
    arr[F["running_s"]] = 60.0                  # a whole day of running, made up
    items[len(items) // 2] = (ref, pack_day(arr))
    m.set_rollups(items)
    altered = m.write(tmp_path / "altered.zip")
    code, report, text = verify_json(capsys, str(altered), window, tmp_path)
    assert code == 1
    assert text.startswith("INTEGRITY: ALTERED")
    assert f"rollup {ref['device_id']}/{ref['day']}" in text.split("VERDICT")[0]
    assert "VERDICT: FAIL" in text
    assert report["verdict"] == "FAIL"
    assert report["integrity"]["intact"] is False
    code, text = run(capsys, "bundle", "check", str(altered))
    assert code == 1 and f"rollup {ref['device_id']}/{ref['day']}" in text


def test_bundle_check_exit_statuses(tmp_path, capsys):
    made = make_store(tmp_path / "gw")
    bundle = tmp_path / "b.zip"
    code, text = run(capsys, "export", str(made.path), "--from", "2024-03-10", "--to",
                     "2024-03-12", "-o", str(bundle), "--quiet")
    assert code == 0 and "2 devices, 6 device-days, 13 ledger entries, 3 checkpoints" in text
    assert run(capsys, "bundle", "check", str(bundle), "--key", made.key.fingerprint, "--json",
               str(tmp_path / "r.json"))[0] == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["intact"] is True and doc["key"] == made.key.fingerprint and doc["problems"] == []
    code, text = run(capsys, "bundle", "check", str(bundle), "--key", "ed25519:" + "ab" * 32)
    assert code == 1 and "not the expected" in text
    m = Members(bundle)
    m.set_json("devices.json", m.json("devices.json")[:1])
    assert run(capsys, "bundle", "check", str(m.write(tmp_path / "t.zip")))[0] == 1

    (tmp_path / "not.zip").write_text("hello")
    assert run(capsys, "bundle", "check", str(tmp_path / "not.zip"))[0] == 2
    with zipfile.ZipFile(tmp_path / "old.zip", "w") as zf:
        zf.writestr("manifest.json", json.dumps({"format": "shangyun-bundle", "version": 0,
                                                 "files": {}}))
    assert run(capsys, "bundle", "check", str(tmp_path / "old.zip"))[0] == 2
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("devices.json", "[]")
    assert main(["bundle", "check", str(tmp_path / "empty.zip")]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert run(capsys, "bundle", "check", str(tmp_path / "missing.zip"))[0] == 2
    (tmp_path / "w.pem").write_text("not a key")
    assert main(["bundle", "check", str(bundle), "--witness-key", str(tmp_path / "w.pem")]) == 2
    assert "--witness-key" in capsys.readouterr().err
    assert main(["bundle", "check", str(bundle), "--witness-key", str(tmp_path / "none")]) == 2


def test_export_refuses_bad_input_with_exit_2(tmp_path, capsys):
    made = make_store(tmp_path / "gw", days=1)
    out = tmp_path / "b.zip"
    assert run(capsys, "export", str(made.path), "--from", "2024-03-12", "--to", "2024-03-10",
               "-o", str(out))[0] == 2
    assert run(capsys, "export", str(made.path), "--from", "10/03/2024", "--to", "2024-03-10",
               "-o", str(out))[0] == 2
    assert run(capsys, "export", str(tmp_path / "none.db"), "--from", "2024-03-10", "--to",
               "2024-03-10", "-o", str(out))[0] == 2
    assert not out.exists() and not (tmp_path / "b.zip.part").exists()


def test_witness_key_prints_the_fingerprint_and_keeps_it(tmp_path, capsys):
    code, first = run(capsys, "witness", "key", "--data", str(tmp_path / "w"), "-o",
                      str(tmp_path / "w.pem"))
    assert code == 0 and first.startswith("ed25519:")
    assert run(capsys, "witness", "key", "--data", str(tmp_path / "w"))[1] == first
    assert (tmp_path / "w.pem").read_text() in first


def test_the_bundle_reader_reads_what_the_store_reader_reads(tmp_path):
    from tests.edge.bundle_factory import DAY0_NS, DAY_NS
    from verifier.bundle_reader import BundleReader
    from verifier.reading import StoreReader
    from verifier.window import Window

    made = make_store(tmp_path / "gw")
    bundle = tmp_path / "b.zip"
    assert main(["export", str(made.path), "--from", "2024-03-10", "--to", "2024-03-12", "-o",
                 str(bundle), "--raw", "--quiet"]) == 0
    window = Window(made.days[0], made.days[-1], "Asia/Shanghai")
    with StoreReader([str(made.path)]) as s, BundleReader(bundle) as b:
        assert [(d.id, d.name, d.ideal_cycle_s, d.identity) for d in s.devices()] == \
            [(d.id, d.name, d.ideal_cycle_s, d.identity) for d in b.devices()]
        assert s.data_span(window) == b.data_span(window)
        for cs, cb in zip(s.iter_cubes(window), b.iter_cubes(window)):
            assert (cs.present == cb.present).all() and (cs.data == cb.data).all()
        assert [(e.ts_ns, e.kind, e.device_id) for e in s.events()] == \
            [(e.ts_ns, e.kind, e.device_id) for e in b.events()]
        for dev in ("m1", "m2"):
            end = DAY0_NS + 3 * DAY_NS
            assert (s.raw_timestamps(dev, DAY0_NS, end) == b.raw_timestamps(dev, DAY0_NS, end)).all()
            assert len(b.raw_timestamps(dev, DAY0_NS, end)) == 3 * 241
        assert b.integrity().intact
    with Store.open(made.path, readonly=True) as store, BundleReader(bundle) as b:
        assert b.capture_hours("m1") == store.capture_hours("m1") != {}
