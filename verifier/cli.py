"""`shangyun verify`: a thin layer over `verifier.verify`.

The gateway wires it as a subcommand (`add_arguments(subparser)`, then `run(args)`);
`python -m verifier` runs it alone. Exit status: 0 PASS, 1 FAIL, 2 bad input.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Sequence, TextIO

from edge.errors import ShangyunError, VerificationInputError

from .activity import ActivityConfig
from .energy import EnergyConfig
from .oee import OeeConfig
from .policy import REGIONS, Voucher, load_voucher
from .reading import StoreReader
from .shifts import ShiftCalendar
from .tariff import Tariff
from .verify import VerifyConfig, verify
from .window import DEFAULT_WINDOW_DAYS, Window, parse_date

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stores", nargs="+", metavar="STORE",
                   help="embedded store file(s); several gateways of one enterprise may be given")
    p.add_argument("--item", help="catalog item, by name (设备物联) or number (5)")
    p.add_argument("--amount", help="voucher amount in yuan")
    p.add_argument("--programme", default=None, help="programme year: 2020 (default) or 2018")
    p.add_argument("--contract-amount", help="contract amount in yuan (instead of --amount)")
    p.add_argument("--region", choices=REGIONS,
                   help="2020: prd (Pearl River Delta, 70%%), ewn (east/west/north, 80%%), "
                        "cluster (industrial-cluster pilot, 80%%)")
    p.add_argument("--voucher", metavar="FILE.yaml",
                   help="voucher as YAML (item, amount | contract_amount + region, programme, "
                        "prior_items, prior_subsidy, lianghua_bonus); flags override it")
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD",
                   help=f"first day of the review window (default: {DEFAULT_WINDOW_DAYS} days "
                        "before today)")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD",
                   help="last day of the review window (default: yesterday)")
    p.add_argument("--against", nargs="+", default=[], metavar="FILE_OR_STORE",
                   help="earlier claims: stores or YAML/JSON lists of ids/serials/fingerprints")
    p.add_argument("--calendar", metavar="FILE.yaml", help="shift calendar (default 24/7)")
    p.add_argument("--tariff", metavar="FILE.yaml",
                   help="time-of-use tariff (default: verifier/tariffs/guangdong.yaml)")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write the JSON report")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def build_voucher(args: argparse.Namespace) -> Voucher:
    base = load_voucher(args.voucher) if args.voucher else None
    item = args.item or (base.item if base else None)
    if not item:
        raise VerificationInputError("give --item (e.g. 设备物联) or --voucher FILE.yaml")
    amount, contract = args.amount, args.contract_amount
    if base and amount is None and contract is None:
        amount, contract = base.amount, base.contract_amount
    if amount is None and contract is None:
        raise VerificationInputError("give --amount, or --contract-amount with --region")
    return Voucher(item=item, programme=args.programme or (base.programme if base else "2020"),
                   amount=amount, contract_amount=contract,
                   region=args.region or (base.region if base else None),
                   prior_items=base.prior_items if base else (),
                   prior_subsidy=base.prior_subsidy if base else 0,
                   lianghua_bonus=base.lianghua_bonus if base else False)


def build_window(args: argparse.Namespace, today: dt.date | None = None) -> Window:
    if args.date_from and args.date_to:
        return Window(parse_date(args.date_from, "--from"), parse_date(args.date_to, "--to"))
    if args.date_to:
        end = parse_date(args.date_to, "--to")
        return Window(end - dt.timedelta(days=DEFAULT_WINDOW_DAYS - 1), end)
    if args.date_from:
        start = parse_date(args.date_from, "--from")
        return Window(start, Window.last_days(today=today).end)
    return Window.last_days(DEFAULT_WINDOW_DAYS, today=today)


def build_config(args: argparse.Namespace) -> VerifyConfig:
    oee = OeeConfig(calendar=ShiftCalendar.load(args.calendar)) if args.calendar else OeeConfig()
    energy = EnergyConfig(Tariff.load(args.tariff)) if args.tariff else EnergyConfig()
    return VerifyConfig(activity=ActivityConfig(), oee=oee, energy=energy)


def _progress(stream: TextIO):
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        stream.write(f"\rverify: {done}/{total} devices read ({time.monotonic() - started:.1f} s)")
        if done >= total:
            stream.write("\n")
        stream.flush()
    return report


def run(args: argparse.Namespace, *, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        voucher = build_voucher(args)
        window = build_window(args)
        config = build_config(args)
        against = []
        if args.against:
            from .against import load_against
            against = [load_against(a, window) for a in args.against]
        with StoreReader(args.stores) as reader:
            report = verify(reader, window=window, voucher=voucher, config=config,
                            against=against or None,
                            progress=None if args.quiet else _progress(err))
        out.write(report.render_text())
        if args.json_out:
            doc = report.to_dict(generated_at=dt.datetime.now(dt.timezone.utc))
            try:
                with open(args.json_out, "w", encoding="utf-8") as f:
                    json.dump(doc, f, ensure_ascii=False, indent=1)
            except OSError as e:
                raise VerificationInputError(
                    f"cannot write --json {args.json_out!r}: {e.strerror}") from None
        return EXIT_PASS if report.passed else EXIT_FAIL
    except (VerificationInputError, ShangyunError) as e:
        err.write(f"shangyun verify: error: {e}\n")
        return EXIT_BAD_INPUT


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verifier",
        description="Verify a 上云上平台 voucher claim against one or more stores.")
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:   # argparse exits 2 on bad usage, which matches our convention
        return int(e.code or 0)
    return run(args)
