"""Benchmark: loading and validating a big gateway config (what `shangyun check` and every
start-up pay). Prints JSON.

    .venv/bin/python tests/bench/bench_config.py [--devices 1000] [--signals 20]

Each measurement runs in its own process so its peak RSS is its own. The baseline, measured in
the same run, is the old path: the file composed once for line numbers and parsed a second time
to build the data, both with PyYAML's pure-Python loader. Target from issue #13: 1,000 devices ×
20 signals in ≤ 2 s on the project's 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_config(path: Path, n_devices: int, n_signals: int) -> None:
    """A hand-written-looking config: block style, every device with its own signal list."""
    out = ["gateway:", "  store: {path: plant.db, retention_days: 30}", "devices:"]
    for i in range(n_devices):
        out += [f"  - id: press-{i:04d}", f"    name: 冲压机 {i}号", "    type: modbus",
                f"    line: L{i % 10}", "    ideal_cycle_s: 12",
                "    connection:", f"      host: 10.0.{i // 250}.{i % 250 + 1}", "      port: 502",
                "      device_id: 1", "      poll_interval_s: 1.0", "    signals:",
                "      - name: state",
                "        address: {table: holding, offset: 0, type: uint16}",
                "        states: {1: running, 2: idle, 3: stopped, 4: fault}"]
        for j in range(1, n_signals):
            out += [f"      - name: sig_{j}",
                    "        address:", "          table: holding",
                    f"          offset: {2 * j}", "          type: float32",
                    "          byte_order: ABCD", "        scale: 0.1"]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def _old_walk(node, loc, lines) -> None:
    import yaml

    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            _old_walk(value_node, loc + (key_node.value,), lines)
            lines[loc + (key_node.value,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _old_walk(item, loc + (i,), lines)


def _old_load_yaml(path, text=None):
    """The loader before issue #13: compose for the marks, then parse again for the data, both
    in pure Python."""
    import yaml

    from gateway.yamlconfig import LocatedYaml

    path = str(path)
    if text is None:
        text = Path(path).read_text(encoding="utf-8")
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict = {}
    _old_walk(node, (), lines)
    data = yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - SafeLoader
    return LocatedYaml(data, lines, path)


def child(mode: str, path: str) -> None:
    from gateway import config

    if mode == "old":
        config.load_yaml = _old_load_yaml
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = config.load_config(path)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # CPU seconds too: on a machine shared with other work, wall time mostly measures them.
    print(json.dumps({"seconds": round(seconds, 3), "cpu_s": round(cpu, 3),"peak_rss_mb": round(peak_kb / 1024, 1),
                      "rss_before_load_mb": round(before_kb / 1024, 1),
                      "devices": len(cfg.devices),
                      "signals": sum(len(d.signals) for d in cfg.devices)}))


def measure(mode: str, path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--signals", type=int, default=20)
    ap.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gateway.yaml"
        write_config(path, args.devices, args.signals)
        new, old = measure("new", path), measure("old", path)
        print(json.dumps({
            "benchmark": "config load + validate",
            "devices": args.devices, "signals_per_device": args.signals,
            "file_mb": round(path.stat().st_size / 1e6, 2),
            "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
            "new": new, "old_baseline": old,
            "speedup": round(old["seconds"] / new["seconds"], 2) if new["seconds"] else None,
            "target_s": 2.0,
            "python": platform.python_version(),
        }, indent=2))


if __name__ == "__main__":
    main()
