"""Benchmark: Sparkplug B messages through the decoder and the edge node session (aliases,
sequence check, samples), in one process, no broker. Prints JSON.

    .venv/bin/python tests/bench/bench_sparkplug.py [--messages 20000] [--metrics 10]

The baseline, measured in the same run, is `json.loads` (C) of the same readings as a JSON
object: what the JSON payload path pays for parsing alone. There is no target in the issue; the
numbers say what one core can take of Sparkplug before the broker or the store are the limit.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

from connectors.mqtt.sparkplug import codec
from connectors.mqtt.sparkplug.codec import Metric, Payload
from connectors.mqtt.sparkplug.session import Binding, SparkplugHost
from edge.model import SignalSpec

T0_MS = 1_764_000_000_000


def ddata(seq: int, n: int) -> bytes:
    return codec.encode(Payload(timestamp_ms=T0_MS + seq, seq=seq, metrics=[
        Metric(alias=i, timestamp_ms=T0_MS + seq, datatype=10, value=i * 1.5) for i in range(n)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--metrics", type=int, default=10)
    args = ap.parse_args()
    n, m = args.messages, args.metrics
    payloads = [ddata(s, m) for s in range(256)]
    as_json = [json.dumps({"ts": T0_MS + s, **{f"m{i}": i * 1.5 for i in range(m)}}).encode() for s in range(256)]

    t = time.perf_counter()
    for k in range(n):
        json.loads(as_json[k % 256])
    baseline = n / (time.perf_counter() - t)

    t = time.perf_counter()
    for k in range(n):
        codec.decode(payloads[k % 256])
    decode = n / (time.perf_counter() - t)

    host = SparkplugHost({("g", "n", "d"): Binding("p1", {f"m{i}": SignalSpec(f"s{i}") for i in range(m)})},
                         rebirth_interval_s=1e9)
    host.handle("spBv1.0/g/NBIRTH/n", codec.encode(Payload(seq=0, metrics=[Metric(name="bdSeq", value=1)])), 0)
    host.handle("spBv1.0/g/DBIRTH/n/d", codec.encode(Payload(seq=1, metrics=[
        Metric(name=f"m{i}", alias=i, datatype=10, value=0.0) for i in range(m)])), 0)
    samples = 0
    t = time.perf_counter()
    for k in range(n):
        samples += len(host.handle("spBv1.0/g/DDATA/n/d", payloads[(k + 2) % 256], 0).samples)
    session = n / (time.perf_counter() - t)
    assert host.counters.sequence_gaps == 0 and samples == n * m

    print(json.dumps({"python": platform.python_version(), "messages": n, "metrics_per_message": m,
                      "payload_bytes": len(payloads[0]),
                      "baseline_json_loads_per_s": round(baseline), "decode_per_s": round(decode),
                      "session_messages_per_s": round(session), "session_samples_per_s": round(session * m)}))


if __name__ == "__main__":
    main()
