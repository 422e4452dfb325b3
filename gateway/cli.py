"""`shangyun` command line: a thin layer over the library.

    shangyun run -c gateway.yaml          run the gateway
    shangyun check -c gateway.yaml        validate a config and list its devices
    shangyun status [-c FILE | --store DB] devices, online/offline, last sample, samples/s
    shangyun demo [--duration S]          virtual factory -> gateway -> store -> summary
    shangyun simulate --machines 30       the virtual factory alone
    shangyun verify STORE... --item 设备物联 --amount 100000   the reviewer's verdict

Exit status: 0 success (verify: PASS), 1 failure (verify: FAIL), 2 bad input or config.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Callable

from edge.errors import ConfigError, ShangyunError

log = logging.getLogger("shangyun")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Protocol libraries are chatty (every subscription, a traceback per retry); the supervisors
    # report each outage once, naming the device. --log-level DEBUG gives their full output back.
    from connectors.logs import quiet_libraries

    quiet_libraries(verbose=level.upper() == "DEBUG")
    for noisy in ("paho", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _cmd_run(args: argparse.Namespace) -> int:
    from . import gc_policy
    from .config import load_config
    from .runner import Gateway

    config = load_config(args.config)
    gc_policy.apply()   # a long-running process: see gc_policy for why and what it measured

    async def main() -> None:
        stop = asyncio.Event()
        _on_signals(stop.set)
        gw = Gateway(config)
        http = None
        if args.http:
            from . import api

            host, port = api.parse_listen(args.http)
            http = await api.serve(api.create_app(config.store_path, health=gw.health,
                                                 oee=config.oee), host, port)
            log.info("dashboard on http://%s:%d/", host, api.bound_port(http))
        try:
            await gw.run(stop, on_tick=lambda g: log.info("status %s", g.summary()),
                         tick_s=args.status_interval)
        finally:
            if http is not None:
                await api.stop(http)

    asyncio.run(main())
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .check import check_config
    from .config import load_config

    config = load_config(args.config)
    findings = check_config(config, resolve=not args.no_resolve)
    for f in findings:
        print(f"shangyun: {f.format(args.config)}", file=sys.stderr)
    errors = sum(f.level == "error" for f in findings)
    if errors:
        print(f"{args.config}: {errors} error(s); not valid", file=sys.stderr)
        return 2
    warnings = len(findings) - errors
    print(f"{args.config}: OK, {len(config.devices)} devices, store {config.store_path}"
          + (f", {warnings} warning(s)" if warnings else ""))
    if config.oee is not None:
        cal = config.oee.calendar
        print(f"  calendar {config.calendar_path}: {len(cal.shifts)} shifts, "
              f"{len(cal.holidays)} holidays, planned stops: "
              f"{', '.join(sorted(config.oee.planned_states))}")
    for d in config.devices:
        print(f"  {d.id:<16} {d.protocol:<7} {len(d.signals):>2} signals  {d.name}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from .status import run_status

    return run_status(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from simulator import cli as sim_cli

    return sim_cli.run(args)


def _cmd_verify(args: argparse.Namespace) -> int:
    from verifier import cli as verify_cli

    return verify_cli.run(args)


def _config_devices(path: str) -> list:
    from .config import load_config

    return load_config(path).devices


def _on_signals(callback: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, callback)
        except (NotImplementedError, RuntimeError):  # not the main thread / platform
            pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shangyun",
        description="Industrial IoT device-onboarding gateway (OPC UA, Modbus, MQTT) "
                    "with a device verifier for 上云上平台 vouchers.",
    )
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"], help="default: info")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="run the gateway from a YAML config")
    p.add_argument("-c", "--config", required=True, help="gateway YAML file")
    p.add_argument("--status-interval", type=float, default=30.0, metavar="S",
                   help="log a status line every S seconds (default 30)")
    p.add_argument("--http", metavar="HOST:PORT", default=None,
                   help="serve the live dashboard and JSON API, e.g. 127.0.0.1:8080")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check", help="validate a config file and list its devices")
    p.add_argument("-c", "--config", required=True, help="gateway YAML file")
    p.add_argument("--no-resolve", action="store_true",
                   help="do not look up host names (e.g. before every start: a dead DNS server "
                        "would delay it by up to 5 s, and only ever gives warnings)")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("status", help="devices, online/offline, last sample, samples per second")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-c", "--config", help="gateway YAML file (its store is read)")
    src.add_argument("--store", help="path of the SQLite store")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--window", type=float, default=60.0, metavar="S",
                   help="samples per second over the last S seconds (default 60)")
    p.set_defaults(func=_cmd_status)

    from . import cli_deadletters

    cli_deadletters.add_parser(sub)

    from connectors.modbus import discover as modbus_discover
    from connectors.mqtt import discover as mqtt_discover
    from connectors.opcua import discover as opcua_discover

    p = sub.add_parser("discover", help="find devices (Modbus scan, MQTT listen, OPC UA browse) and suggest device YAML")
    dsub = p.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)
    mqtt_discover.add_parser(dsub)
    opcua_discover.add_parser(dsub)
    q = dsub.add_parser("modbus", help="scan Modbus unit ids, name their profiles, write device YAML")
    modbus_discover.add_arguments(q)
    q.set_defaults(func=modbus_discover.run_cli)

    from connectors.opcua import cert_cli as opcua_cert

    opcua_cert.add_parser(sub, devices_of=_config_devices)

    from . import cli_evidence

    cli_evidence.add_parsers(sub)

    from .demo import add_arguments as demo_args

    p = sub.add_parser("demo", help="virtual factory -> gateway -> store, with live progress")
    demo_args(p)
    p.set_defaults(func=_cmd_demo)

    from simulator import cli as sim_cli

    p = sub.add_parser("simulate", help="run the virtual factory (OPC UA, Modbus, MQTT machines)")
    sim_cli.add_arguments(p)
    p.set_defaults(func=_cmd_simulate)

    try:
        from verifier import cli as verify_cli
    except ImportError:  # pragma: no cover - the verifier is part of the distribution
        verify_cli = None
    if verify_cli is not None:
        p = sub.add_parser("verify", help="count distinct active devices and judge a voucher")
        verify_cli.add_arguments(p)
        p.set_defaults(func=_cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"shangyun: config error: {e}", file=sys.stderr)
        return 2
    except ShangyunError as e:
        print(f"shangyun: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
