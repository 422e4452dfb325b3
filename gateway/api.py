"""The gateway's HTTP face: a JSON API and the live dashboard page that polls it.

    GET /                      the dashboard (static HTML + JS, no build step)
    GET /api/status            every device: online/offline, state, power, today's OEE/parts/kWh
    GET /api/devices/{id}      one device's registry record and identity evidence
    GET /api/events?limit=N    recent events (connects, disconnects, identity, bad payloads)
    GET /api/deadletters       refused payloads and samples (?device_id=&reason=&limit=), as
                               `shangyun deadletters --json`
    GET /api/unconfigured      devices seen on an MQTT topic template, configured nowhere, with YAML
    GET /healthz               200 {"status": "ok"} or 503 {"status": "unhealthy", "problems": [...]}
                               when samples arrive but nothing is committed (given `health`)

The app reads the store through its own read-only connection, so a slow page never holds the
writer's lock.
"""
from __future__ import annotations

import asyncio
import contextlib
from importlib import resources
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse

from edge.errors import ConfigError
from edge.store import Store

from verifier.oee import OeeConfig

from . import cli_deadletters
from .live import snapshot
from .unconfigured import unconfigured_devices


def create_app(store_path: str, *, title: str = "shangyun",
               health: Callable[[], dict[str, Any]] | None = None,
               oee: OeeConfig | None = None) -> FastAPI:
    """The app over the store at `store_path`; `health` (Gateway.health) makes /healthz report
    the data path, not just that the process answers; `oee` is the plant's shift calendar
    (`gateway.calendar`) for the dashboard's OEE, 24/7 without one."""
    reader: dict[str, Store] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if "s" in reader:
            reader.pop("s").close()

    app = FastAPI(title=title, version="1", docs_url="/api/docs",
                  openapi_url="/api/openapi.json", lifespan=lifespan)

    def store() -> Store:
        # Opened lazily: the gateway may create the file after the app object exists.
        if "s" not in reader:
            reader["s"] = Store.open(store_path, readonly=True)
        return reader["s"]

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        body = health() if health is not None else {"status": "ok"}
        return JSONResponse(body, status_code=200 if body.get("status") == "ok" else 503)

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        return await asyncio.to_thread(snapshot, store(), oee=oee)

    @app.get("/api/devices/{device_id}")
    async def device(device_id: str) -> dict[str, Any]:
        rec = await asyncio.to_thread(store().device, device_id)
        if rec is None:
            raise HTTPException(404, f"no device {device_id!r}")
        return {
            "id": rec.id, "name": rec.name, "protocol": rec.protocol, "profile": rec.profile,
            "line": rec.line, "location": rec.location, "ideal_cycle_s": rec.ideal_cycle_s,
            "online": rec.online, "last_seen_ns": rec.last_seen_ns,
            "first_seen_ns": rec.first_seen_ns, "last_error": rec.last_error,
            "identity": rec.identity.to_dict() if rec.identity else None,
        }

    @app.get("/api/events")
    async def events(limit: int = 100, device_id: str | None = None) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(store().events, device_id=device_id,
                                       limit=max(1, min(limit, 1000)))
        return [{"id": e.id, "ts_ns": e.ts_ns, "device_id": e.device_id, "kind": e.kind,
                 "data": e.data} for e in rows]

    @app.get("/api/deadletters")
    async def deadletters(limit: int = 100, device_id: str | None = None,
                          reason: str | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(cli_deadletters.report, store(), device_id=device_id,
                                       reason=reason, limit=max(1, min(limit, 1000)))

    @app.get("/api/unconfigured")
    async def unconfigured() -> list[dict[str, Any]]:
        return await asyncio.to_thread(unconfigured_devices, store())

    @app.get("/", response_class=HTMLResponse)
    def dashboard() -> str:
        return (resources.files("gateway") / "static" / "dashboard.html").read_text("utf-8")

    return app


async def serve(app: FastAPI, host: str, port: int) -> "Any":
    """Start uvicorn inside the running loop; returns the server (set `should_exit` to stop)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="http")
    while not server.started:
        if task.done():
            task.result()  # raises the bind error, e.g. port in use
            raise RuntimeError("HTTP server exited during start-up")
        await asyncio.sleep(0.05)
    server.task = task  # type: ignore[attr-defined]
    return server


def bound_port(server: "Any") -> int:
    """The port uvicorn actually bound (useful when asked for port 0)."""
    for srv in getattr(server, "servers", []):
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    return int(server.config.port)


async def stop(server: "Any") -> None:
    server.should_exit = True
    await server.task


def parse_listen(value: str) -> tuple[str, int]:
    """'HOST:PORT' or 'PORT' -> (host, port); loopback unless a host is given."""
    host, _, port = value.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise ConfigError(f"--http: expected HOST:PORT or PORT, got {value!r}") from None
