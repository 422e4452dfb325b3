"""Evidence commands (docs/bundle.md, docs/evidence.md):

    shangyun export STORE --from DATE --to DATE -o bundle.zip [--raw]
    shangyun bundle check bundle.zip [--key FINGERPRINT] [--witness-key FILE]
    shangyun witness serve --listen 127.0.0.1:8470 --data DIR
    shangyun witness key --data DIR

`bundle check` exits 0 when the bundle is intact, 1 when anything was altered, 2 on bad input.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from edge.errors import ConfigError, ShangyunError

EXIT_INTACT, EXIT_ALTERED, EXIT_BAD_INPUT = 0, 1, 2


def add_parsers(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("export", help="write a review window's evidence bundle (zip) from a store")
    p.add_argument("store", metavar="STORE", help="the gateway's SQLite store")
    p.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD",
                   help="first UTC day of the window")
    p.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD",
                   help="last UTC day of the window")
    p.add_argument("-o", "--output", required=True, metavar="BUNDLE.zip")
    p.add_argument("--raw", action="store_true",
                   help="include the raw samples still retained in the window")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run_export)

    p = sub.add_parser("bundle", help="check an evidence bundle offline")
    bsub = p.add_subparsers(dest="bundle_command", metavar="COMMAND", required=True)
    q = bsub.add_parser("check", help="exit 0 intact, 1 altered (each problem named), 2 bad input")
    q.add_argument("bundle", metavar="BUNDLE.zip")
    q.add_argument("--key", metavar="FINGERPRINT",
                   help="the gateway key fingerprint you expect (from `shangyun status` at "
                        "installation); without it a bundle re-signed with another key is only "
                        "caught by its receipts")
    q.add_argument("--witness-key", action="append", default=[], metavar="FILE",
                   help="PEM public key of a witness you trust (repeatable)")
    q.add_argument("--json", dest="json_out", metavar="FILE", help="also write the result as JSON")
    q.set_defaults(func=run_check)

    p = sub.add_parser("witness", help="the witness service that signs checkpoint receipts")
    wsub = p.add_subparsers(dest="witness_command", metavar="COMMAND", required=True)
    q = wsub.add_parser("serve", help="serve POST /v1/checkpoints and GET /v1/key")
    q.add_argument("--listen", default="127.0.0.1:8470", metavar="HOST:PORT")
    q.add_argument("--data", required=True, metavar="DIR", help="its key and witness.db")
    q.set_defaults(func=run_witness_serve)
    q = wsub.add_parser("key", help="print the witness's public key (made if missing)")
    q.add_argument("--data", required=True, metavar="DIR")
    q.add_argument("-o", "--output", metavar="FILE", help="also write the PEM here")
    q.set_defaults(func=run_witness_key)


def _date(value: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{flag}: expected YYYY-MM-DD, got {value!r}") from None


def _progress(quiet: bool) -> Callable[[str, int, int], None] | None:
    if quiet:
        return None
    started = time.monotonic()

    def report(stage: str, done: int, total: int) -> None:
        sys.stderr.write(f"\rexport: {stage} {done}/{total} ({time.monotonic() - started:.1f} s)"
                         "\033[K")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return report


def run_export(args: argparse.Namespace) -> int:
    from edge.bundle import export_bundle
    from edge.evidence_key import display_fingerprint

    day_from, day_to = _date(args.date_from, "--from"), _date(args.date_to, "--to")
    if day_to < day_from:
        raise ConfigError(f"--to {day_to} is before --from {day_from}")
    r = export_bundle(args.store, args.output, day_from, day_to, raw=args.raw,
                      progress=_progress(args.quiet))
    key = display_fingerprint(r.key) if r.key else "none (no gateway has signed this store)"
    print(f"{r.path}: {r.size / 1e6:.1f} MB, {r.devices} devices, {r.rollup_days} device-days, "
          f"{r.entries} ledger entries, {r.checkpoints} checkpoints, {r.receipts} receipts"
          + (f", {r.raw_samples} raw samples" if args.raw else "") + f"; key {key}")
    if r.stale:
        print(f"shangyun export: warning: {len(r.stale)} device-day(s) changed or became due for "
              f"sealing after the last checkpoint ({', '.join(r.stale[:5])}"
              f"{' …' if len(r.stale) > 5 else ''}); `bundle check` reports them until a "
              "checkpoint seals them: export again after the next one", file=sys.stderr)
    return 0


def run_check(args: argparse.Namespace) -> int:
    from edge.bundle import BundleError, CheckOptions, check_path

    try:
        witness_keys = tuple(Path(f).read_bytes() for f in args.witness_key)
    except OSError as e:
        print(f"shangyun bundle check: cannot read --witness-key: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        result = check_path(args.bundle, CheckOptions(key=args.key, witness_keys=witness_keys))
    except (BundleError, ShangyunError) as e:
        print(f"shangyun bundle check: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    sys.stdout.write(result.render_text())
    if args.json_out:
        _write_json(args.json_out, result.to_dict())
    return EXIT_INTACT if result.intact else EXIT_ALTERED


def _write_json(path: str, doc: Any) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
    except OSError as e:
        raise ConfigError(f"cannot write --json {path!r}: {e.strerror}") from None


def run_witness_serve(args: argparse.Namespace) -> int:
    from .cli import _on_signals
    from .witness import serve_forever

    async def main() -> None:
        stop = asyncio.Event()
        _on_signals(stop.set)
        await serve_forever(args.listen, args.data, stop)

    asyncio.run(main())
    return 0


def run_witness_key(args: argparse.Namespace) -> int:
    from edge.evidence_key import display_fingerprint

    from .witness import witness_key

    key = witness_key(args.data)
    print(display_fingerprint(key.fingerprint))
    print(key.public_pem.decode("ascii"), end="")
    if args.output:
        Path(args.output).write_bytes(key.public_pem)
    return 0
