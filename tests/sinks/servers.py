"""A private VictoriaMetrics on a free loopback port (it accepts InfluxDB's v2 write API), for the
sink tests and the outbox benchmark.

    with VictoriaMetrics(tmp_path) as vm:
        vm.url; vm.stop(); vm.start()          # restarts on the same port with the same data
        vm.export('{__name__="shangyun_value"}')
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from simulator.ports import free_port

EXECUTABLE = "/usr/bin/victoria-metrics"


def find_victoria_metrics() -> str | None:
    return shutil.which("victoria-metrics") or (EXECUTABLE if Path(EXECUTABLE).exists() else None)


class VictoriaMetrics:
    def __init__(self, data_dir: Path, *, start_timeout_s: float = 20.0) -> None:
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self._timeout = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = find_victoria_metrics()
        if exe is None:
            raise RuntimeError("victoria-metrics not installed: apt-get install victoria-metrics")
        self._proc = subprocess.Popen(
            [exe, f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.data_dir}",
             # The default retention (1 month) would silently discard old test timestamps.
             "-retentionPeriod=100y",
             # InfluxDB overwrites a point written again (same measurement, tags, timestamp);
             # VictoriaMetrics keeps both unless deduplication is on. This makes it behave as the
             # databases the sink is for, so a resent batch is counted once as it would be there.
             "-dedup.minScrapeInterval=1ms",
             "-search.disableCache", "-loggerLevel=ERROR"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited with {self._proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError("victoria-metrics did not come up")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every stored series matching `match`, raw ({"metric", "values", "timestamps" in ms})."""
        # Newly written rows become visible to searches after an in-memory flush (about a second).
        q = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{q}", timeout=60) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]

    def __enter__(self) -> "VictoriaMetrics":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ConfiguredMosquitto:
    """A Mosquitto started from the config text given (TLS listeners, persistence...), which
    simulator.broker.MosquittoBroker does not offer; `ports` are waited for after each start.

        with ConfiguredMosquitto(conf_text, [port], tmp_path) as broker:
            broker.stop(); broker.start()      # the same config, ports and persistence file
    """

    def __init__(self, conf: str, ports: list[int], work_dir: Path, start_timeout_s: float = 10.0) -> None:
        # Started as root, Mosquitto drops to user "mosquitto" before it loads keys or the
        # persistence file, which a private temporary directory then hides from it; as another
        # user this line is ignored.
        self.conf_path = Path(work_dir) / "mosquitto.conf"
        self.conf_path.write_text("user root\n" + conf)
        self.ports = ports
        self._timeout = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from simulator.broker import find_mosquitto
        self._proc = subprocess.Popen([find_mosquitto(), "-c", str(self.conf_path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self._timeout
        pending = list(self.ports)
        while pending:
            try:
                socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5).close()
                pending.pop(0)
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise RuntimeError(f"mosquitto ({self.conf_path}) did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()        # SIGTERM: Mosquitto writes its persistence file
            self._proc.wait(10)
        self._proc = None

    def __enter__(self) -> "ConfiguredMosquitto":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
