"""`shangyun simulate`: run a virtual factory until interrupted (or for --duration seconds).

The gateway registers this as a subcommand through `add_arguments` + `run`; `main(argv)` and
`python -m simulator` run it on their own.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from .broker import BrokerError, MosquittoBroker
from .factory import Factory
from .machine import make_specs


def parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (e.g. 127.0.0.1:1883), got {text!r}")
    return host, int(port)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--machines", type=positive_int, default=30, help="number of machines (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="factory seed: same seed, same factory (default 1)")
    parser.add_argument("--broker", type=parse_host_port, metavar="HOST:PORT",
                        help="MQTT broker for the MQTT machines (default: start a private Mosquitto)")
    parser.add_argument("--manifest", type=Path, metavar="FILE",
                        help="write what was started, and where it listens, as JSON")
    parser.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    parser.add_argument("--host", default="127.0.0.1", help="address the servers listen on (default 127.0.0.1)")
    parser.add_argument("--tick", type=positive_float, default=1.0, metavar="S",
                        help="seconds between value updates (default 1)")
    parser.add_argument("--start-ts", type=float, metavar="EPOCH_S",
                        help="when the machine models began (default now); pass the start of a "
                             "backfilled history so the live values continue it seamlessly")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shangyun simulate",
        description="Run a virtual factory of machines speaking OPC UA, Modbus TCP and MQTT.")
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    broker: MosquittoBroker | None = None
    try:
        if args.broker is None:
            broker = MosquittoBroker(host=args.host)
            broker_addr = broker.start()
        else:
            broker_addr = args.broker
        return asyncio.run(_serve(args, broker_addr, out))
    except BrokerError as exc:
        print(f"shangyun simulate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if broker is not None:
            broker.close()


async def _serve(args: argparse.Namespace, broker: tuple[str, int], out: TextIO) -> int:
    started = time.perf_counter()
    factory = Factory(make_specs(args.machines, seed=args.seed), broker=broker,
                      host=args.host, tick_s=args.tick, start_ts=getattr(args, "start_ts", None))
    await factory.start()
    try:
        manifest = factory.manifest()
        if args.manifest is not None:
            _write_json(args.manifest, manifest)
        _print_summary(manifest, time.perf_counter() - started, args.manifest, out)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await asyncio.wait_for(stop.wait(), timeout=args.duration)
        except asyncio.TimeoutError:
            pass
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    finally:
        await factory.stop()
    print("simulator stopped", file=out, flush=True)
    return 0


def _write_json(path: Path, data: dict) -> None:
    # Write then rename, so a reader polling for the file never sees half of it.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _print_summary(manifest: dict, startup_s: float, manifest_path: Path | None, out: TextIO) -> None:
    machines = manifest["machines"]
    broker = manifest["broker"]
    counts = {p: sum(1 for m in machines if m["protocol"] == p) for p in ("opcua", "modbus", "mqtt")}
    print(f"shangyun simulator: {len(machines)} machines ({counts['opcua']} OPC UA, "
          f"{counts['modbus']} Modbus TCP, {counts['mqtt']} MQTT) started in {startup_s:.1f} s", file=out)
    if broker:
        print(f"  MQTT broker  {broker['host']}:{broker['port']}", file=out)
    for m in machines:
        where = m.get("endpoint") or (f"{m['host']}:{m['port']} device {m['device_id']}" if "port" in m
                                      else f"{m.get('topic_prefix')}/#")
        print(f"  {m['id']:<4} {m['line']:<3} {m['protocol']:<6} {m['name']:<22} {where}", file=out)
    if manifest_path is not None:
        print(f"  manifest     {manifest_path}", file=out)
    print("Ctrl-C to stop.", file=out, flush=True)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
