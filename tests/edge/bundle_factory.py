"""Stores with a real evidence ledger, their bundles, and a tamperer that edits a bundle the way a
careful forger would: it recomputes the manifest's digests, so only the deeper checks can
notice (shared by tests/edge/test_bundle.py, tests/gateway/test_bundle.py and the benchmark)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge.bundle import export_bundle
from edge.bundle.format import MANIFEST, ROLLUP_BLOBS, ROLLUP_INDEX, canon
from edge.evidence_key import EvidenceKey
from edge.model import DeviceSpec, IdentityEvidence, Sample, SignalSpec
from edge.store import Store

S_NS = 10**9
MIN_NS = 60 * S_NS
HOUR_NS = 3600 * S_NS
DAY_NS = 86_400 * S_NS
DAY0 = dt.date(2024, 3, 10)
DAY0_NS = 1_710_028_800 * S_NS
SIGNALS = (SignalSpec("state"), SignalSpec("count_total"), SignalSpec("power_kw"))


def spec(dev: str) -> DeviceSpec:
    return DeviceSpec(id=dev, name=f"machine {dev}", protocol="opcua", connection={},
                      signals=SIGNALS, line="L1", ideal_cycle_s=10.0)


def machine_day(dev: str, day_ns: int, offset: int = 0) -> list[Sample]:
    """A shift of a machine: runs 08:00–16:00 UTC with a count every minute."""
    out = []
    for m in range(8 * 60, 16 * 60 + 1, 2):
        ts = day_ns + m * MIN_NS + offset * S_NS
        running = m < 16 * 60
        out += [Sample(dev, "state", ts, "running" if running else "idle"),
                Sample(dev, "count_total", ts, (m - 480) // 2 * 3),
                Sample(dev, "power_kw", ts, 4.0 + (m % 7) / 10 if running else 0.4)]
    return out


@dataclass
class Made:
    path: Path
    key: EvidenceKey
    days: list[dt.date]
    walls: list[int]


def make_store(directory: Path, *, devices: tuple[str, ...] = ("m1", "m2"), days: int = 3,
               wall_ns: Callable[[int], int] | None = None) -> Made:
    """`days` days of two machines from DAY0, one checkpoint after each day (at `wall_ns(k)`,
    default the day's end + 1 h, so day k is sealed by checkpoint k+1... and the last by the
    last). The store is closed on return."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "shangyun.db"
    key = EvidenceKey.load_or_create(directory)
    walls = []
    with Store.open(path) as store:
        for i, dev in enumerate(devices):
            store.upsert_device(spec(dev))
            store.set_identity(dev, IdentityEvidence("opcua", serial_number=f"SN-{dev}",
                                                     application_uri=f"urn:{dev}"), DAY0_NS)
        for k in range(days):
            day_ns = DAY0_NS + k * DAY_NS
            for i, dev in enumerate(devices):
                store.write_samples(machine_day(dev, day_ns, offset=i))
            store.roll_up(day_ns + DAY_NS + HOUR_NS)
            wall = wall_ns(k) if wall_ns else day_ns + DAY_NS + HOUR_NS
            store.checkpoint(key, now_ns=wall)
            walls.append(wall)
    return Made(path, key, [DAY0 + dt.timedelta(days=k) for k in range(days)], walls)


def export(made: Made, out: Path, **kw: Any) -> Path:
    export_bundle(made.path, out, made.days[0], made.days[-1], **kw)
    return out


# ---------------------------------------------------------------------- tampering
class Members:
    """A bundle's members in memory, edited and written back with a consistent manifest."""

    def __init__(self, path: Path):
        with zipfile.ZipFile(path) as zf:
            self.data = {n: zf.read(n) for n in zf.namelist()}
        self.manifest = json.loads(self.data.pop(MANIFEST))

    def lines(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.data[name].splitlines() if line.strip()]

    def set_lines(self, name: str, items: list[dict[str, Any]]) -> None:
        self.data[name] = b"".join(canon(i) + b"\n" for i in items)

    def json(self, name: str) -> Any:
        return json.loads(self.data[name])

    def set_json(self, name: str, value: Any) -> None:
        self.data[name] = json.dumps(value, ensure_ascii=False).encode()

    def rollups(self) -> list[tuple[dict[str, Any], bytes]]:
        blob = self.data[ROLLUP_BLOBS]
        return [(r, blob[r["offset"]:r["offset"] + r["length"]]) for r in self.lines(ROLLUP_INDEX)]

    def set_rollups(self, items: list[tuple[dict[str, Any], bytes]]) -> None:
        out, index, offset = [], [], 0
        for r, b in items:
            index.append({**r, "offset": offset, "length": len(b),
                          "sha256": hashlib.sha256(b).hexdigest()})
            out.append(b)
            offset += len(b)
        self.data[ROLLUP_BLOBS] = b"".join(out)
        self.set_lines(ROLLUP_INDEX, index)

    def write(self, path: Path, *, fix_manifest: bool = True) -> Path:
        if fix_manifest:
            self.manifest["files"] = {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
                                      for n, b in self.data.items()}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for n, b in self.data.items():
                zf.writestr(n, b, compress_type=zipfile.ZIP_STORED if n == ROLLUP_BLOBS
                            else zipfile.ZIP_DEFLATED)
            zf.writestr(MANIFEST, json.dumps(self.manifest))
        return path


def forge_chain(m: Members, key: EvidenceKey) -> None:
    """What a forger with their own key does after editing: recompute every entry's hash (from
    the genesis, the bundle's start) and seal hash, and re-sign every checkpoint with `key`,
    replacing the public key: a bundle consistent in itself."""
    from edge.bundle.format import CHECKPOINTS, LEDGER, PUBLIC_KEY, ROLLUP_INDEX, entry_hash
    from edge.store.ledger import GENESIS

    blobs = {(r["device_id"], r["day"]): r["sha256"] for r in m.lines(ROLLUP_INDEX)}
    entries, heads, prev = m.lines(LEDGER), {}, GENESIS
    for e in entries:
        if e["kind"] == "rollup" and (e["device_id"], e["body"]["day"]) in blobs:
            e["body"]["sha256"] = blobs[(e["device_id"], e["body"]["day"])]
        prev = entry_hash(prev, e["seq"], e["kind"], e["captured_ns"], e["device_id"], e["body"])
        e["hash"] = prev.hex()
        heads[e["seq"]] = prev.hex()
    m.set_lines(LEDGER, entries)
    cps, prev_body = m.lines(CHECKPOINTS), None
    for cp in cps:
        body = json.loads(cp["body"])
        body["head_hash"] = heads.get(body["head_seq"], body["head_hash"])
        body["key"] = key.fingerprint
        body["prev_checkpoint_hash"] = "0" * 64 if prev_body is None \
            else hashlib.sha256(prev_body.encode()).hexdigest()
        text = canon(body).decode()
        cp.update(body=text, head_hash=body["head_hash"], key_fingerprint=key.fingerprint,
                  signature=key.sign(text.encode()).hex())
        prev_body = text
    m.set_lines(CHECKPOINTS, cps)
    m.data[PUBLIC_KEY] = key.public_pem
    m.manifest["gateway_key"] = key.fingerprint


def receipt_for(cp_body_text: str, gateway_fp: str, witness: EvidenceKey,
                witness_ns: int) -> tuple[dict[str, Any], bytes]:
    """A witness receipt made by hand (the contract's), for tests that need no service."""
    receipt = {"format": 1, "checkpoint_sha256": hashlib.sha256(cp_body_text.encode()).hexdigest(),
               "gateway_key": gateway_fp, "witness_ns": witness_ns,
               "witness_key": witness.fingerprint}
    return receipt, witness.sign(canon(receipt))
