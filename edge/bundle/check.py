"""Checking a bundle offline: is anything in it different from what the gateway captured and
signed? Each problem names the file and the device, day, entry or checkpoint (docs/bundle.md
lists the checks; docs/evidence.md says what each proves and what it does not).

Problems mean the bundle was altered after capture (or cannot be trusted: a wrong key, a
gateway clock set back); findings are true statements a reviewer needs that are not tampering
(backfilled history, entries not yet signed, late witnessing).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypeVar

from ..evidence_key import (EvidenceKeyError, display_fingerprint, fingerprint,
                            load_public_pem, verify)
from ..model import IdentityEvidence
from .format import (CAPTURE_STATS, CHECKPOINTS, DEVICES, LEDGER, MANIFEST, NS_PER_DAY,
                     PUBLIC_KEY, RECEIPTS, ROLLUP_INDEX, ZERO_HASH,
                     Bundle, BundleError, canon, entry_hash)
from .result import (CheckOptions, IntegrityResult, Problem, duration_text, iso_time,
                     normalize_fingerprint)
from .write import day_start_ns

NS_PER_S = 1_000_000_000
T = TypeVar("T")
# Spec fields a `device` entry records and devices.json repeats: analysis uses them (OEE needs
# the ideal cycle time), so an edit of any of them is an alteration.
SPEC_FIELDS = ("name", "protocol", "profile", "line", "location", "ideal_cycle_s")
MAX_LISTED = 8     # problems of one kind listed one by one before they are summarised


@dataclass
class _Checkpoint:
    seq: int
    body_text: str
    body: dict[str, Any]
    signed: bool            # its signature verifies with the bundle's key

    @property
    def head_seq(self) -> int:
        return int(self.body["head_seq"])

    @property
    def wall_ns(self) -> int:
        return int(self.body["wall_ns"])

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body_text.encode("utf-8")).hexdigest()


@dataclass
class _Ledger:
    """What the walk over ledger.jsonl collected for the later checks."""

    first_seq: int | None = None
    last_seq: int | None = None
    seals: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    specs: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    identities: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)


class _Checker:
    def __init__(self, bundle: Bundle, opts: CheckOptions):
        self.b = bundle
        self.opts = opts
        self.problems: list[Problem] = []
        self.findings: list[Problem] = []
        self.summary: dict[str, Any] = {}
        self.signed_seq: int | None = None     # the last entry a valid checkpoint signs

    def problem(self, code: str, where: str, message: str) -> None:
        self.problems.append(Problem(code, where, message))

    def finding(self, code: str, where: str, message: str) -> None:
        self.findings.append(Problem(code, where, message))

    def guarded(self, section: Callable[[], T], default: T) -> T:
        """A member that does not parse is a problem of this bundle (its manifest says it is
        ours), not bad input: the other checks still run."""
        try:
            return section()
        except BundleError as e:
            self.problem("malformed", "bundle", f"{e} (damaged or edited)")
            return default

    # ------------------------------------------------------------------ files
    def files(self) -> None:
        listed = self.b.manifest["files"]
        for name, meta in sorted(listed.items()):
            if not self.b.has(name):
                self.problem("file_missing", name, "listed in the manifest but missing")
                continue
            want = meta.get("sha256") if isinstance(meta, dict) else None
            try:
                got = self.b.member_sha256(name)
            except BundleError as e:
                self.problem("digest", name, f"unreadable: {e}")
                continue
            if got != want:
                self.problem("digest", name, "content differs from the manifest's sha256 "
                                             "(edited after export)")
        names = self.b.names()
        for name in sorted(set(names)):
            if name != MANIFEST and name not in listed:
                self.problem("file_added", name, "not listed in the manifest (added after export)")
            if names.count(name) > 1:
                # zip readers disagree on which copy they show: the check and a person
                # unzipping it could be looking at different files.
                self.problem("file_added", name, f"{names.count(name)} members have this name")

    # ------------------------------------------------------------------ key
    def key(self) -> tuple[Any, str | None]:
        if not self.b.has(PUBLIC_KEY):
            self.problem("unsigned", PUBLIC_KEY, "the bundle has no public key: nothing in it "
                                                 "can be verified")
            return None, None
        try:
            pub = load_public_pem(self.b.read(PUBLIC_KEY))
        except EvidenceKeyError as e:
            self.problem("key", PUBLIC_KEY, str(e))
            return None, None
        fp = fingerprint(pub)
        if self.b.manifest.get("gateway_key") not in (None, fp):
            self.problem("key", MANIFEST, f"names gateway key {self.b.manifest.get('gateway_key')}"
                                          f" but {PUBLIC_KEY} is {fp}")
        if self.opts.key is not None and normalize_fingerprint(self.opts.key) != fp:
            self.problem("key", PUBLIC_KEY,
                         f"signed with key {display_fingerprint(fp)}, not the expected "
                         f"{display_fingerprint(normalize_fingerprint(self.opts.key))} "
                         "(re-signed with another key?)")
        return pub, fp

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self, pub: Any, fp: str | None) -> list[_Checkpoint]:
        out: list[_Checkpoint] = []
        prev: _Checkpoint | None = None
        for no, row in self.b.lines(CHECKPOINTS):
            where = f"{CHECKPOINTS} line {no}"
            try:
                seq = int(row["seq"])
                text = str(row["body"])
                body = json.loads(text)
                sig = bytes.fromhex(row["signature"])
                int(body["head_seq"]), int(body["wall_ns"]), bytes.fromhex(body["head_hash"])
            except (KeyError, TypeError, ValueError) as e:
                self.problem("checkpoint", where, f"malformed: {type(e).__name__}: {e}")
                continue
            where = f"checkpoint {seq}"
            signed = pub is not None and verify(pub, sig, text.encode("utf-8"))
            if pub is not None and not signed:
                self.problem("signature", where, "signature does not verify with the bundle's key "
                                                 "(edited, or re-signed with another key)")
            if body.get("seq") != seq or row.get("head_seq") != body["head_seq"] \
                    or row.get("head_hash") != body["head_hash"] \
                    or row.get("wall_ns") != body["wall_ns"]:
                self.problem("checkpoint", where, "its row differs from the body it signs")
            if fp is not None and body.get("key") != fp:
                self.problem("key", where, f"names key {body.get('key')}, not the bundle's {fp}")
            cp = _Checkpoint(seq, text, body, signed)
            if prev is not None:
                if seq != prev.seq + 1:
                    self.problem("checkpoint_chain", where,
                                 f"follows checkpoint {prev.seq}: checkpoints between are missing"
                                 if seq > prev.seq else f"out of order after checkpoint {prev.seq}")
                elif body.get("prev_checkpoint_hash") != prev.sha256:
                    self.problem("checkpoint_chain", where,
                                 f"does not chain to checkpoint {prev.seq} (its "
                                 "prev_checkpoint_hash differs: a checkpoint was replaced)")
                if cp.head_seq < prev.head_seq:
                    self.problem("checkpoint_chain", where,
                                 f"signs head seq {cp.head_seq}, before checkpoint {prev.seq}'s "
                                 f"{prev.head_seq}")
            elif seq == 1 and body.get("prev_checkpoint_hash") != "0" * 64:
                self.problem("checkpoint_chain", where, "the first checkpoint names a predecessor")
            out.append(cp)
            prev = cp
        if not out:
            self.problem("unsigned", CHECKPOINTS, "no checkpoint: nothing in the bundle is signed")
        return out

    # ------------------------------------------------------------------ ledger
    def ledger(self, cps: list[_Checkpoint]) -> _Ledger:
        heads: dict[int, _Checkpoint] = {}
        for cp in cps:
            heads.setdefault(cp.head_seq, cp)
        led = _Ledger()
        run: bytes | None = None          # the chain recomputed from its signed start
        stored_prev: bytes | None = None  # the previous entry's recorded hash
        expected: int | None = None
        last_head = 0                     # seq of the last checkpoint head passed
        for no, e in self.b.lines(LEDGER):
            try:
                seq, kind, captured = int(e["seq"]), str(e["kind"]), int(e["captured_ns"])
                dev = e["device_id"]
                body = e["body"]
                recorded = bytes.fromhex(e["hash"])
            except (KeyError, TypeError, ValueError) as exc:
                self.problem("entry", f"{LEDGER} line {no}", f"malformed: {exc}")
                continue
            where = f"{LEDGER} seq {seq}"
            if expected is None:
                led.first_seq = seq
                run = self._chain_start(seq, heads)
                stored_prev = run
                last_head = seq - 1
            elif seq != expected:
                if seq < expected:
                    self.problem("order", where, f"out of order: comes after seq {expected - 1}")
                else:
                    self.problem("gap", f"{LEDGER} seq {expected}–{seq - 1}",
                                 f"{seq - expected} entries missing")
            expected = seq + 1
            led.last_seq = seq
            assert run is not None and stored_prev is not None
            run = entry_hash(run, seq, kind, captured, dev, body)
            if entry_hash(stored_prev, seq, kind, captured, dev, body) != recorded:
                self.problem("entry_edited", where,
                             f"{kind} entry{' of ' + dev if dev else ''} does not match its "
                             "recorded hash (edited)")
            stored_prev = recorded
            cp = heads.get(seq)
            if cp is not None:
                if run.hex() != cp.body["head_hash"]:
                    self.problem("chain", f"checkpoint {cp.seq}",
                                 f"the ledger from seq {last_head + 1} to {seq} does not hash to "
                                 "the head this checkpoint signs (entries edited, removed, "
                                 "inserted or reordered)")
                run = bytes.fromhex(cp.body["head_hash"])   # check the next stretch on its own
                last_head = seq
            self._collect(led, seq, kind, dev, body)
        self._ledger_end(led, cps)
        return led

    def _chain_start(self, first_seq: int, heads: dict[int, _Checkpoint]) -> bytes:
        if first_seq == 1:
            return ZERO_HASH
        anchor = heads.get(first_seq - 1)
        if anchor is None:
            self.problem("chain", f"{LEDGER} seq {first_seq}",
                         f"the ledger starts at seq {first_seq} but no checkpoint signs seq "
                         f"{first_seq - 1}: the chain is not anchored to a signed head")
            return ZERO_HASH
        return bytes.fromhex(anchor.body["head_hash"])

    @staticmethod
    def _collect(led: _Ledger, seq: int, kind: str, dev: Any, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(dev, str):
            return
        if kind == "rollup" and "day" in body:
            led.seals[(dev, str(body["day"]))] = (seq, body)
        elif kind == "device" and isinstance(body.get("spec"), dict):
            led.specs[dev] = (seq, body["spec"])
        elif kind == "identity":
            led.identities[dev] = (seq, body)

    def _ledger_end(self, led: _Ledger, cps: list[_Checkpoint]) -> None:
        signed = [cp for cp in cps if cp.signed]
        top = max((cp.head_seq for cp in signed), default=None)
        last = led.last_seq if led.last_seq is not None else 0
        if top is not None and top > last:
            cp = next(c for c in signed if c.head_seq == top)
            self.problem("truncated", LEDGER,
                         f"checkpoint {cp.seq} signs entries up to seq {top} but the ledger ends "
                         f"at seq {last} (truncated)")
        elif led.last_seq is not None and (top is None or top < led.last_seq):
            first = (top or 0) + 1
            self.finding("unsigned", f"{LEDGER} seq {max(first, led.first_seq or 1)}–{last}",
                         "after the last checkpoint: not signed yet (export again after the "
                         "next checkpoint)")
        self.signed_seq = top

    # ------------------------------------------------------------------ rollups
    def rollups(self, led: _Ledger, last_wall_ns: int | None) -> list[str]:
        signed_seq = self.signed_seq or 0
        seen: set[tuple[str, str]] = set()
        unsealed_recent = 0
        unsigned = 0
        days = []
        for ref in self.b.rollup_refs():
            key = (ref.device_id, ref.day)
            seen.add(key)
            where = f"rollup {ref.device_id}/{ref.day}"
            try:
                digest = hashlib.sha256(self.b.rollup_blob(ref)).hexdigest()
                dt.date.fromisoformat(ref.day)
            except (BundleError, ValueError) as e:
                self.problem("rollup_edited", where, f"unreadable: {e}")
                continue
            days.append(ref.day)
            if digest != ref.sha256:
                self.problem("rollup_edited", where, f"blob differs from {ROLLUP_INDEX}'s sha256")
            seal = led.seals.get(key)
            if seal is None:
                due = day_start_ns(dt.date.fromisoformat(ref.day)) + NS_PER_DAY \
                    + int(self.opts.seal_after_s * NS_PER_S)
                if last_wall_ns is not None and due > last_wall_ns:
                    unsealed_recent += 1
                else:
                    self.problem("rollup_unsealed", where,
                                 "has no sealed ledger entry (inserted or replaced after capture)")
                continue
            seq, body = seal
            if body.get("sha256") != digest:
                self.problem("rollup_edited", where,
                             f"differs from its sealed entry (ledger seq {seq}, revision "
                             f"{body.get('revision')}): edited after capture")
            elif seq > signed_seq:
                unsigned += 1
        if unsealed_recent:
            self.finding("unsealed", ROLLUP_INDEX,
                         f"{unsealed_recent} device-day(s) too recent to be sealed yet")
        if unsigned:
            self.finding("unsigned", ROLLUP_INDEX,
                         f"{unsigned} device-day(s) sealed only in entries after the last "
                         "checkpoint")
        window = self.b.manifest.get("utc_days") or {}
        lo, hi = str(window.get("from", "")), str(window.get("to", "\uffff"))
        for (dev, day), (seq, _) in sorted(led.seals.items()):
            if lo <= day <= hi and (dev, day) not in seen:
                self.problem("day_removed", f"rollup {dev}/{day}",
                             f"sealed in ledger seq {seq} but missing from the bundle (removed)")
        return sorted(days)

    # ------------------------------------------------------------------ devices
    def devices(self, led: _Ledger) -> None:
        devices = self.b.json(DEVICES, default=[])
        if not isinstance(devices, list):
            self.problem("device", DEVICES, "is not a list of devices")
            return
        listed = set()
        for d in devices:
            if not isinstance(d, dict) or "id" not in d:
                self.problem("device", DEVICES, f"malformed device {d!r:.60}")
                continue
            dev = str(d["id"])
            listed.add(dev)
            where = f"device {dev}"
            spec = led.specs.get(dev)
            if spec is None:
                self.problem("device_inserted", where,
                             "has no `device` entry in the ledger (added after capture)")
                continue
            seq, s = spec
            for f in SPEC_FIELDS:
                if f in s and s[f] != d.get(f):
                    self.problem("device_edited", where,
                                 f"{f} is {d.get(f)!r} in {DEVICES} but {s[f]!r} in its ledger "
                                 f"entry (seq {seq})")
            self._identity(where, d.get("identity"), led.identities.get(dev))
        for dev, (seq, _) in sorted(led.specs.items()):
            if dev not in listed:
                self.problem("device_removed", f"device {dev}",
                             f"onboarded in ledger seq {seq} but missing from {DEVICES}")

    def _identity(self, where: str, ident: Any, entry: tuple[int, dict[str, Any]] | None) -> None:
        if entry is None:
            if ident:
                self.problem("identity_edited", where,
                             "has identity evidence that no ledger entry records")
            return
        seq, body = entry
        try:
            have = IdentityEvidence.from_dict(ident) if ident else None
            want = IdentityEvidence.from_dict(body.get("evidence") or {})
        except (TypeError, ValueError, AttributeError) as e:
            self.problem("identity_edited", where, f"unreadable identity evidence: {e}")
            return
        if have is None or have.fingerprint() != body.get("fingerprint") or have != want:
            self.problem("identity_edited", where,
                         f"identity evidence differs from its ledger entry (seq {seq})")

    # ------------------------------------------------------------------ capture statistics
    def capture(self, led: _Ledger) -> dict[str, dict[str, int]]:
        per_day: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        per_device: dict[str, dict[str, int]] = defaultdict(lambda: {"samples": 0, "backfilled": 0})
        for no, r in self.b.lines(CAPTURE_STATS):
            try:
                dev, hour = str(r["device_id"]), int(r["hour"])
                n, b = int(r["samples"]), int(r["backfilled"])
                first, last = int(r["first_capture_ns"]), int(r["last_capture_ns"])
            except (KeyError, TypeError, ValueError) as e:
                self.problem("capture_stats", f"{CAPTURE_STATS} line {no}", f"malformed: {e}")
                continue
            day = dt.datetime.fromtimestamp(hour * 3600, dt.timezone.utc).date().isoformat()
            agg = per_day[(dev, day)]
            if agg[0] == 0:
                agg[2], agg[3] = first, last
            agg[0] += n
            agg[1] += b
            agg[2], agg[3] = min(agg[2], first), max(agg[3], last)
            per_device[dev]["samples"] += n
            per_device[dev]["backfilled"] += b
        listed = 0
        for (dev, day), agg in sorted(per_day.items()):
            seal = led.seals.get((dev, day))
            if seal is None:
                continue
            seq, body = seal
            want = [body.get("samples"), body.get("backfilled"), body.get("first_capture_ns"),
                    body.get("last_capture_ns")]
            if all(w is None for w in want):
                continue
            if [w if w is not None else g for w, g in zip(want, agg)] != agg:
                listed += 1
                self.problem("capture_stats", f"{CAPTURE_STATS} {dev}/{day}",
                             f"capture counts differ from the sealed entry (ledger seq {seq}): "
                             f"{agg[0]} samples, {agg[1]} backfilled here, sealed {want[0]}, "
                             f"{want[1]}")
        return per_device

    # ------------------------------------------------------------------ witness
    def receipts(self, cps: list[_Checkpoint], fp: str | None, trusted: dict[str, Any]) -> int:
        by_seq = {cp.seq: cp for cp in cps}
        deltas: list[tuple[int, int]] = []   # (checkpoint seq, witness_ns - wall_ns)
        other: set[str] = set()
        for no, r in self.b.lines(RECEIPTS):
            try:
                seq, text = int(r["checkpoint_seq"]), str(r["body"])
                receipt = json.loads(text)
                sig = bytes.fromhex(r["signature"])
                witness_ns = int(receipt["witness_ns"])
            except (KeyError, TypeError, ValueError) as e:
                self.problem("receipt", f"{RECEIPTS} line {no}", f"malformed: {e}")
                continue
            where = f"receipt for checkpoint {seq}"
            cp = by_seq.get(seq)
            if cp is None:
                self.problem("receipt", where, "its checkpoint is not in the bundle")
                continue
            if receipt.get("checkpoint_sha256") != cp.sha256:
                self.problem("receipt", where, "was given for a different checkpoint body (the "
                                               "checkpoint was changed or re-signed after it was "
                                               "witnessed)")
                continue
            if fp is not None and receipt.get("gateway_key") != fp:
                self.problem("receipt", where, f"names gateway key {receipt.get('gateway_key')}, "
                                               f"not {fp}")
            wkey = str(receipt.get("witness_key"))
            if wkey != r.get("witness_fingerprint"):
                self.problem("receipt", where, "its row names another witness than its body")
            if not trusted:
                continue
            if wkey not in trusted:
                other.add(wkey)
                continue
            if not verify(trusted[wkey], sig, canon(receipt)):
                self.problem("receipt", where, f"signature does not verify with witness key "
                                               f"{display_fingerprint(wkey)} (forged receipt)")
                continue
            deltas.append((seq, witness_ns - cp.wall_ns))
        if other:
            self.problem("witness", RECEIPTS,
                         "receipts from witness(es) not trusted: "
                         + ", ".join(display_fingerprint(o) for o in sorted(other))
                         + " (another witness than the one given with --witness-key)")
        if trusted:
            self._clock(deltas)
        return len(deltas)

    def _clock(self, deltas: list[tuple[int, int]]) -> None:
        tol = int(self.opts.clock_tolerance_s * NS_PER_S)
        if not deltas:
            self.problem("witness", RECEIPTS, "no checkpoint was witnessed by the trusted "
                                              "witness: nothing anchors this history in time")
            return
        for seq, d in deltas:
            if d < -tol:
                self.problem("clock", f"checkpoint {seq}",
                             f"claims a wall time {duration_text(d)} after the witness saw it: the "
                             "gateway clock runs ahead")
        lo = min(d for _, d in deltas)
        if lo > tol:
            self.problem("clock", CHECKPOINTS,
                         f"every witnessed checkpoint reached the witness at least {duration_text(lo)}"
                         " after the wall time it claims: the gateway clock is set back by about "
                         "that much, so its wall and capture times cannot be trusted")
            return
        late = [(s, d) for s, d in deltas if d > self.opts.late_witness_s * NS_PER_S]
        if late:
            self.finding("late_witness", f"checkpoints {late[0][0]}–{late[-1][0]}",
                         f"{len(late)} checkpoint(s) reached the witness more than "
                         f"{duration_text(self.opts.late_witness_s * NS_PER_S)} after their wall time "
                         f"(up to {duration_text(max(d for _, d in late))}): what they cover is proven "
                         "to exist only from the witness time")

    # ------------------------------------------------------------------ capture vs data time
    def backfill(self, days: list[str], cps: list[_Checkpoint],
                 per_device: dict[str, dict[str, int]]) -> None:
        if days and cps:
            first, last = dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1])
            data_span = ((last - first).days + 1) * NS_PER_DAY
            walls = [cp.wall_ns for cp in cps]
            capture_span = max(walls) - min(walls)
            if data_span >= 2 * NS_PER_DAY and capture_span < self.opts.backfill_ratio * data_span:
                self.finding("backfilled", "bundle",
                             f"history spans {first} – {last} ({(last - first).days + 1} days) but "
                             f"was signed between {iso_time(min(walls))} and {iso_time(max(walls))} "
                             f"({duration_text(capture_span)}): captured long after the time it "
                             "claims (imported, simulated or replayed history)")
        heavy = sorted(dev for dev, c in per_device.items()
                       if c["samples"] and c["backfilled"] * 2 > c["samples"])
        if heavy:
            total = sum(per_device[d]["backfilled"] for d in heavy)
            self.finding("backfilled", CAPTURE_STATS,
                         f"{len(heavy)} device(s) have most of their samples backfilled "
                         f"({total} samples captured over an hour after their source time): "
                         + ", ".join(heavy[:MAX_LISTED]) + (" …" if len(heavy) > MAX_LISTED else ""))
        self.summary["backfilled"] = {d: c for d, c in per_device.items() if c["backfilled"]}


def check_bundle(bundle: Bundle, options: CheckOptions | None = None) -> IntegrityResult:
    """Every check of docs/bundle.md over an opened bundle. BundleError only for content that
    cannot even be parsed as our format (a malformed index); alterations are problems."""
    opts = options or CheckOptions()
    trusted = _trusted_witnesses(opts.witness_keys)
    c = _Checker(bundle, opts)
    c.files()
    pub, fp = c.key()
    cps = c.guarded(lambda: c.checkpoints(pub, fp), [])
    led = c.guarded(lambda: c.ledger(cps), _Ledger())
    signed_walls = [cp.wall_ns for cp in cps if cp.signed]
    days = c.guarded(lambda: c.rollups(led, max(signed_walls) if signed_walls else None), [])
    c.guarded(lambda: c.devices(led), None)
    per_device = c.guarded(lambda: c.capture(led), {})
    witnessed = c.guarded(lambda: c.receipts(cps, fp, trusted), 0)
    c.backfill(days, cps, per_device)
    entries = 0 if led.first_seq is None else (led.last_seq or 0) - led.first_seq + 1
    return IntegrityResult(
        path=bundle.path, problems=tuple(c.problems), findings=tuple(c.findings), key=fp,
        key_checked=opts.key is not None, checkpoints=len(cps), entries=entries,
        signed_seq=c.signed_seq,
        wall_span_ns=(min(signed_walls), max(signed_walls)) if signed_walls else None,
        witnessed=witnessed, witness_checked=bool(opts.witness_keys), summary=c.summary)


def _trusted_witnesses(pems: Sequence[bytes]) -> dict[str, Any]:
    """Fingerprint → key of each --witness-key; BundleError (bad input, exit 2) for a file
    that is not an Ed25519 public key."""
    trusted = {}
    for pem in pems:
        try:
            k = load_public_pem(pem)
        except EvidenceKeyError as e:
            raise BundleError(f"--witness-key: {e}") from None
        trusted[fingerprint(k)] = k
    return trusted


def check_path(path: str, options: CheckOptions | None = None) -> IntegrityResult:
    with Bundle.open(path) as b:
        return check_bundle(b, options)

