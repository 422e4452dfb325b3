"""`shangyun check`: what a valid-looking config can still get wrong, found before the engineer
leaves the site.

The schema is checked by `load_config`; here come the checks that need the machine or the
wider world: the store's directory exists and is writable (error: the gateway could not start),
and each host name resolves (warning only: factory DNS is often down, or the box is not yet on the
plant network, when the engineer runs the check).
"""
from __future__ import annotations

from connectors.mqtt.topics import topic_filter_problem  # noqa: F401 - re-exported for callers

import ipaddress
import os
import socket
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

from .config import LoadedConfig

# Name resolution has no timeout of its own; a check must not hang on a dead DNS server.
RESOLVE_DEADLINE_S = 5.0


@dataclass(frozen=True)
class Finding:
    level: str          # "error" or "warning"
    message: str
    line: int | None = None

    def format(self, path: str) -> str:
        where = f"{path}:{self.line}" if self.line else path
        return f"{where}: {self.level}: {self.message}"


def check_config(config: LoadedConfig, *, resolve: bool = True) -> list[Finding]:
    """Every problem found, errors and warnings, in file order."""
    findings = store_findings(config)
    if resolve:
        findings += host_findings(config)
    return sorted(findings, key=lambda f: f.line or 0)


def store_findings(config: LoadedConfig) -> list[Finding]:
    path = Path(config.store_path)
    line = config.line_of("gateway", "store", "path")
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        return [Finding("error", f"gateway.store.path: the store's directory {parent} {what}; "
                                 "create it (the gateway does not create directories)", line)]
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return [Finding("error", f"gateway.store.path: {path} exists but is not readable "
                                     "and writable by this user", line)]
    elif not os.access(parent, os.W_OK | os.X_OK):
        return [Finding("error", f"gateway.store.path: cannot create {path.name} in {parent}: "
                                 "the directory is not writable by this user", line)]
    return []


def _host_of(connection: dict) -> str | None:
    if connection.get("host"):
        return str(connection["host"])
    endpoint = connection.get("endpoint")
    if endpoint:
        try:
            return urlsplit(str(endpoint)).hostname
        except ValueError:
            return None
    return None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def host_findings(config: LoadedConfig) -> list[Finding]:
    users: dict[str, list[str]] = {}
    for d in config.devices:
        host = _host_of(dict(d.connection))
        if host and not _is_address(host):
            users.setdefault(host, []).append(d.id)
    failed = unresolved(users)
    out = []
    for host, why in failed.items():
        for device_id in users[host]:
            key = "host" if "host" in config.devices_by_id[device_id].connection else "endpoint"
            out.append(Finding("warning", f"{device_id}: host {host!r} does not resolve here "
                                          f"({why}); fine if this machine is not on the plant "
                                          "network yet", config.line_of_device(device_id,
                                                                               "connection", key)))
    return out


def unresolved(hosts: Iterable[str], deadline_s: float = RESOLVE_DEADLINE_S) -> dict[str, str]:
    """The hosts that do not resolve within the deadline, with the reason."""
    hosts = list(hosts)
    if not hosts:
        return {}
    pool = ThreadPoolExecutor(max_workers=min(16, len(hosts)), thread_name_prefix="resolve")
    futures = {pool.submit(socket.getaddrinfo, h, None): h for h in hosts}
    done, pending = wait(futures, timeout=deadline_s)
    pool.shutdown(wait=False, cancel_futures=True)
    out = {futures[f]: f"no answer within {deadline_s:.0f} s" for f in pending}
    for f in done:
        exc = f.exception()
        if exc is not None:
            out[futures[f]] = getattr(exc, "strerror", None) or str(exc)
    return out
