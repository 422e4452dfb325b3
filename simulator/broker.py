"""A private Mosquitto on a free loopback port, for the simulator, the demo and tests.

    with MosquittoBroker() as broker:        # or: host, port = broker.start(); ...; broker.stop()
        connect(broker.host, broker.port)
        broker.stop(); broker.start()        # comes back on the same port (reconnect tests)

Configured as a gateway's broker must be (see the README): persistence on, in its temporary
directory, which outlives stop()/start() of the same object, so a restart keeps the retained
messages, the persistent sessions and the QoS 1 messages queued for them.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .ports import free_port

__all__ = ["MosquittoBroker", "BrokerError", "find_mosquitto", "free_port"]


class BrokerError(RuntimeError):
    """Mosquitto is missing, would not start, or would not accept connections."""


def find_mosquitto() -> str:
    """Path of the mosquitto executable; BrokerError with the fix when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError("mosquitto not found on PATH or in /usr/sbin; install it: apt-get install mosquitto")


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (containers)
        return str(os.geteuid())


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class MosquittoBroker:
    """One Mosquitto process; anonymous, persistent, listening on `host` only."""

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None,
                 executable: str | None = None, start_timeout_s: float = 10.0) -> None:
        self.host = host
        self._port = port
        self._executable = executable
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("broker has no port yet: call start() first")
        return self._port

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> tuple[str, int]:
        """Start (or start again, on the same port) and wait until it accepts connections."""
        if self.running:
            return self.host, self.port
        exe = self._executable or find_mosquitto()
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="shangyun-mosquitto-")
        # A fresh port may be taken between probing and binding; retry a few times then. A port
        # chosen before (restart) must be kept, so only the first start may move.
        attempts = 1 if self._port is not None else 3
        last_error = ""
        for _ in range(attempts):
            port = self._port if self._port is not None else free_port(self.host)
            last_error = self._launch(exe, port)
            if not last_error:
                self._port = port
                return self.host, port
        raise BrokerError(last_error)

    def _launch(self, exe: str, port: int) -> str:
        """Run mosquitto on `port`; '' once it accepts connections, else why it failed."""
        assert self._dir is not None
        conf = Path(self._dir.name) / "mosquitto.conf"
        log = Path(self._dir.name) / "mosquitto.log"
        conf.write_text(
            f"listener {port} {self.host}\n"
            "allow_anonymous true\n"
            # Without persistence a restart loses every message acknowledged to a publisher but
            # not yet delivered. Saved on a clean stop, and every second against a crash.
            "persistence true\n"
            f"persistence_location {self._dir.name}/\n"
            "autosave_interval 1\n"
            # Started as root, Mosquitto would switch to the `mosquitto` user, which cannot write
            # our private directory; run as whoever started us.
            f"user {_user_name()}\n"
            # The default (1000) drops QoS 1 messages queued for a subscriber that is applying
            # backpressure; a gateway must lose nothing, so the queue is bounded by memory only.
            "max_queued_messages 0\n"
            # Unacknowledged messages in flight to one MQTT 3.1.1 client (an MQTT 5 client sets
            # its own Receive Maximum). The gateway acknowledges only after storing, so the
            # default of 20 would starve it; this is its backpressure window.
            "max_inflight_messages 1000\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        with open(log, "ab") as log_file:
            self._proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log_file,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if _accepts(self.host, port):
                return ""
            time.sleep(0.02)
        self._kill()
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        return f"mosquitto did not accept connections on {self.host}:{port}; its log:\n{tail}"

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); the port and config are kept for start()."""
        self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def close(self) -> None:
        """Stop and remove the temporary directory."""
        self._kill()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> "MosquittoBroker":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port else self.host
        return f"MosquittoBroker({where}, {'running' if self.running else 'stopped'})"
