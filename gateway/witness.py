"""The witness: a small HTTP service with its own key that signs timestamped receipts for
gateways' checkpoints, and the gateway's client that sends it each checkpoint
(docs/evidence.md: what a receipt proves).

    shangyun witness serve --listen 127.0.0.1:8470 --data DIR

A receipt says "the checkpoint with this sha256, signed by this gateway key, existed when this
witness saw it". The witness keeps every receipt (DIR/witness.db) and answers the same receipt
again for the same checkpoint, so a retried post never moves its time; a second, different
checkpoint with a seq it already witnessed for that gateway is refused (409): that gateway
rewrote its history.

The client treats the store's checkpoints without a receipt as its queue: nothing is lost when
the link is down or the gateway restarts, and they are sent oldest first once the witness is
reachable again (backoff with jitter meanwhile).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request

from edge.bundle.format import canon
from edge.evidence_key import (PUB_FILE, EvidenceKey, EvidenceKeyError, display_fingerprint,
                               fingerprint, load_public_pem, verify)
from edge.store import Store
from edge.store.ledger import CHECKPOINT_FORMAT, Checkpoint

log = logging.getLogger("shangyun.witness")

RECEIPT_FORMAT = 1
WITNESS_DB = "witness.db"


# ---------------------------------------------------------------------- the service
class WitnessLog:
    """Every receipt the witness signed, one row per checkpoint body (DIR/witness.db)."""

    def __init__(self, path: Path):
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            """CREATE TABLE IF NOT EXISTS witnessed (
                   checkpoint_sha256 TEXT PRIMARY KEY,
                   gateway_key TEXT NOT NULL,
                   seq INTEGER NOT NULL,
                   checkpoint TEXT NOT NULL,
                   receipt TEXT NOT NULL,
                   signature BLOB NOT NULL,
                   UNIQUE (gateway_key, seq))""")

    def close(self) -> None:
        self._conn.close()

    def witness(self, key: EvidenceKey, checkpoint: dict[str, Any], gateway_key: str
                ) -> dict[str, Any]:
        """The receipt for `checkpoint` (already verified), signed now or the one signed
        before. HTTPException 409 when another body was witnessed with the same seq."""
        text = canon(checkpoint).decode("utf-8")
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        seq = int(checkpoint["seq"])
        with self._lock:
            row = self._conn.execute("SELECT receipt, signature FROM witnessed "
                                     "WHERE checkpoint_sha256 = ?", (sha,)).fetchone()
            if row is not None:
                return {"receipt": json.loads(row[0]), "signature": bytes(row[1]).hex()}
            other = self._conn.execute("SELECT receipt FROM witnessed WHERE gateway_key = ? "
                                       "AND seq = ?", (gateway_key, seq)).fetchone()
            if other is not None:
                when = json.loads(other[0])["witness_ns"]
                raise HTTPException(409, f"checkpoint {seq} of gateway {gateway_key} was "
                                         f"witnessed at {when} ns with a different body: "
                                         "this gateway's history was rewritten")
            receipt = {"format": RECEIPT_FORMAT, "checkpoint_sha256": sha,
                       "gateway_key": gateway_key, "witness_ns": time.time_ns(),
                       "witness_key": key.fingerprint}
            signature = key.sign(canon(receipt))
            self._conn.execute(
                "INSERT INTO witnessed (checkpoint_sha256, gateway_key, seq, checkpoint, "
                "receipt, signature) VALUES (?, ?, ?, ?, ?, ?)",
                (sha, gateway_key, seq, text, canon(receipt).decode("utf-8"), signature))
        return {"receipt": receipt, "signature": signature.hex()}

    def latest(self, gateway_key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT seq, receipt, signature FROM witnessed "
                                     "WHERE gateway_key = ? ORDER BY seq DESC LIMIT 1",
                                     (gateway_key,)).fetchone()
        if row is None:
            return None
        return {"seq": row[0], "receipt": json.loads(row[1]), "signature": bytes(row[2]).hex()}

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM witnessed").fetchone()[0])


WITNESS_KEY_NAME = "witness"


def witness_key(data_dir: str | Path) -> EvidenceKey:
    """The witness's own key in `data_dir` (witness.key, 0600, and witness.pub, made at first
    start): named apart from a gateway's evidence.key, so a directory shared by mistake never
    makes one party sign with the other's key."""
    return EvidenceKey.load_or_create(data_dir, name=WITNESS_KEY_NAME)


def _checked_post(doc: Any) -> tuple[dict[str, Any], str]:
    """(checkpoint, gateway fingerprint) of a well-formed, correctly signed post; 400 otherwise."""
    if not isinstance(doc, dict) or not isinstance(doc.get("checkpoint"), dict):
        raise HTTPException(400, "expected JSON {checkpoint, signature, public_key}")
    cp = doc["checkpoint"]
    try:
        pub = load_public_pem(str(doc["public_key"]))
        signature = bytes.fromhex(str(doc["signature"]))
        seq = cp["seq"]
    except (KeyError, ValueError, EvidenceKeyError) as e:
        raise HTTPException(400, f"malformed checkpoint post: {e}") from None
    if cp.get("format") != CHECKPOINT_FORMAT or not isinstance(seq, int) or seq < 1:
        raise HTTPException(400, f"not a format-{CHECKPOINT_FORMAT} checkpoint with a seq")
    fp = fingerprint(pub)
    if cp.get("key") != fp:
        raise HTTPException(400, f"the checkpoint names key {cp.get('key')!r}, but the public key "
                                 f"sent is {fp}")
    if not verify(pub, signature, canon(cp)):
        raise HTTPException(400, "bad signature: the checkpoint was not signed by that key")
    return cp, fp


def create_app(data_dir: str | Path) -> FastAPI:
    d = Path(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    key = witness_key(d)
    book = WitnessLog(d / WITNESS_DB)
    app = FastAPI(title="shangyun witness")
    app.state.key = key
    app.state.log = book

    @app.get("/v1/key")
    def get_key() -> dict[str, Any]:
        return {"fingerprint": key.fingerprint, "public_key": key.public_pem.decode("ascii")}

    @app.get("/v1/checkpoints/latest")
    def get_latest(gateway_key: str) -> dict[str, Any]:
        """The newest checkpoint witnessed for a gateway: a reviewer compares it with a
        bundle's last checkpoint to see whether the bundle's history was cut at its end."""
        latest = book.latest(gateway_key)
        if latest is None:
            raise HTTPException(404, f"no checkpoint of gateway {gateway_key} was witnessed")
        return latest

    @app.post("/v1/checkpoints")
    async def post_checkpoint(request: Request) -> dict[str, Any]:
        try:
            doc = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as e:
            raise HTTPException(400, f"not JSON: {e}") from None
        cp, fp = _checked_post(doc)
        return await asyncio.to_thread(book.witness, key, cp, fp)

    return app


async def serve_forever(listen: str, data_dir: str | Path, stop: asyncio.Event) -> None:
    from . import api

    host, port = api.parse_listen(listen)
    app = create_app(data_dir)
    server = await api.serve(app, host, port)
    log.info("witness %s on http://%s:%d/ (receipts in %s)",
             display_fingerprint(app.state.key.fingerprint), host, api.bound_port(server),
             Path(data_dir) / WITNESS_DB)
    try:
        await stop.wait()
    finally:
        await api.stop(server)
        app.state.log.close()


# ---------------------------------------------------------------------- the gateway's client
class WitnessError(Exception):
    """The witness could not be reached, refused the checkpoint, or answered a bad receipt."""


class WitnessSender:
    """Sends the store's unreceipted checkpoints to one witness and stores its receipts.

    `witness_pem` pins the witness's public key (the `key_file` of the config); without it the
    key the witness announces on first contact is used, and logged, for the rest of the run.
    """

    def __init__(self, store: Store, url: str, *, witness_pem: bytes | None = None,
                 poll_s: float = 5.0, min_backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 timeout_s: float = 10.0):
        self.store = store
        self.url = url.rstrip("/")
        self._pinned = load_public_pem(witness_pem) if witness_pem else None
        self._witness: Any = self._pinned
        self.poll_s = poll_s
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._wake = asyncio.Event()
        self._next_seq = 1          # every checkpoint before it has this witness's receipt
        self._last_error: str | None = None
        self.counters = {"sent": 0, "failed": 0, "pending": 0}

    def notify(self, _cp: Checkpoint | None = None) -> None:
        """A Checkpointer listener: a new checkpoint is sent now rather than at the next poll."""
        self._wake.set()

    @property
    def witness_fingerprint(self) -> str | None:
        return fingerprint(self._witness) if self._witness is not None else None

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            while not stop.is_set():
                try:
                    await self.send_pending(http)
                    failures = 0
                    delay = self.poll_s
                except WitnessError as e:
                    failures += 1
                    self.counters["failed"] += 1
                    if str(e) != self._last_error:    # once per distinct trouble, not per retry
                        log.warning("witness %s: %s (retrying with backoff)", self.url, e)
                        self._last_error = str(e)
                    delay = min(self.max_backoff_s, self.min_backoff_s * 2 ** (failures - 1))
                    delay *= random.uniform(0.5, 1.0)   # gateways that lost one witness spread out
                self._wake.clear()
                await _wait_any(stop, self._wake, delay)

    async def send_pending(self, http: httpx.AsyncClient) -> int:
        """Send every checkpoint without a receipt from this witness, oldest first; the number
        of receipts stored. WitnessError at the first that fails (it is retried first)."""
        if self._witness is None:
            self._witness = await self._fetch_key(http)
        wfp = self.witness_fingerprint
        cps = await asyncio.to_thread(self.store.checkpoints, self._next_seq)
        if not cps:
            return 0
        done = await asyncio.to_thread(self._receipted, wfp, [cp.seq for cp in cps])
        todo = [cp for cp in cps if cp.seq not in done]
        self.counters["pending"] = len(todo)
        if not todo:
            self._next_seq = cps[-1].seq + 1
            return 0
        pem = await asyncio.to_thread(self._gateway_pem)
        sent = 0
        for cp in todo:
            receipt, signature = await self._post(http, cp, pem)
            await asyncio.to_thread(self.store.add_receipt, cp.seq, wfp, receipt, signature)
            sent += 1
            self.counters["sent"] += 1
            self.counters["pending"] = len(todo) - sent
            self._last_error = None
        self._next_seq = todo[-1].seq + 1
        return sent

    def _receipted(self, wfp: str | None, seqs: list[int]) -> set[int]:
        # Usually one new checkpoint: look it up. After a start, all of them: one scan.
        if len(seqs) <= 8:
            rows = [r for seq in seqs for r in self.store.receipts(seq)]
        else:
            rows = [r for r in self.store.receipts() if r.checkpoint_seq >= seqs[0]]
        return {r.checkpoint_seq for r in rows if r.witness_fingerprint == wfp}

    def _gateway_pem(self) -> str:
        path = Path(self.store.path).resolve().parent / PUB_FILE
        try:
            return path.read_text("ascii")
        except OSError as e:
            raise WitnessError(f"cannot read the gateway's public key {path}: {e}") from None

    async def _fetch_key(self, http: httpx.AsyncClient) -> Any:
        try:
            r = await http.get(f"{self.url}/v1/key")
            r.raise_for_status()
            key = load_public_pem(r.json()["public_key"])
        except (httpx.HTTPError, ValueError, KeyError, EvidenceKeyError) as e:
            raise WitnessError(f"cannot get the witness's key: {e}") from None
        log.info("witness %s has key %s (not pinned: set gateway.evidence.witness key_file)",
                 self.url, display_fingerprint(fingerprint(key)))
        return key

    async def _post(self, http: httpx.AsyncClient, cp: Checkpoint, pem: str
                    ) -> tuple[dict[str, Any], bytes]:
        doc = {"checkpoint": cp.body, "signature": cp.signature.hex(), "public_key": pem}
        try:
            r = await http.post(f"{self.url}/v1/checkpoints", json=doc)
        except httpx.HTTPError as e:
            raise WitnessError(f"unreachable ({type(e).__name__}: {e})") from None
        if r.status_code != 200:
            raise WitnessError(f"refused checkpoint {cp.seq}: HTTP {r.status_code} {r.text[:200]}")
        try:
            answer = r.json()
            receipt, signature = answer["receipt"], bytes.fromhex(answer["signature"])
        except (ValueError, KeyError, TypeError) as e:
            raise WitnessError(f"malformed receipt for checkpoint {cp.seq}: {e}") from None
        self._check_receipt(cp, receipt, signature)
        return receipt, signature

    def _check_receipt(self, cp: Checkpoint, receipt: Any, signature: bytes) -> None:
        # A receipt kept must be one a reviewer's check accepts: the right checkpoint, our key,
        # signed by the witness we trust.
        wfp = self.witness_fingerprint
        if not isinstance(receipt, dict) or receipt.get("checkpoint_sha256") != cp.body_sha256 \
                or receipt.get("gateway_key") != cp.key_fingerprint \
                or receipt.get("witness_key") != wfp:
            raise WitnessError(f"the receipt for checkpoint {cp.seq} does not match it")
        if not verify(self._witness, signature, canon(receipt)):
            raise WitnessError(f"the receipt for checkpoint {cp.seq} is not signed by witness "
                               f"{display_fingerprint(wfp or '')}")


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def send_checkpoints(store: Store, url: str, stop_event: asyncio.Event, *,
                           witness_pem: bytes | None = None) -> None:
    """Run a WitnessSender until `stop_event` is set (the runner's wiring point)."""
    await WitnessSender(store, url, witness_pem=witness_pem).run(stop_event)


def start_sender(store: Store, checkpointer: Any, url: str, *,
                 key_file: str | Path | None = None) -> "asyncio.Task[None]":
    """The runner's wiring: a WitnessSender woken by each of `checkpointer`'s checkpoints
    (gateway.evidence.Checkpointer), as a task that runs until cancelled. `key_file` pins the
    witness's public key (PEM)."""
    pem = Path(key_file).read_bytes() if key_file else None
    sender = WitnessSender(store, url, witness_pem=pem)
    checkpointer.listeners.append(sender.notify)
    task = asyncio.create_task(sender.run(asyncio.Event()), name="witness")
    task.sender = sender  # type: ignore[attr-defined]  # its counters, for status
    return task
