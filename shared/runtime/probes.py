"""`/metrics`, `/healthz` and `/readyz` of the worker and the dispatcher, on their metrics port.

Off unless a port is given (`HOOKLINE_METRICS_PORT` or `--metrics-port`; 0 picks a free
one, written to the log): several workers on one host each need their own. Served by
uvicorn inside the service's own event loop, with the service's signal handlers left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import msgspec
import uvicorn
from litestar import Litestar, Request, Response, get
from prometheus_client import generate_latest

from shared.db.pool import DB_ERRORS

log = logging.getLogger(__name__)

Checks = Callable[[], Awaitable[dict[str, bool]]]
_json = msgspec.json.Encoder()


def loopback_only(host: str) -> bool:
    """Whether a server listening on `host` can be reached from this machine alone."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def metrics_allowed(authorization: str | None, token: str | None, loopback: bool = True) -> bool:
    """Whether a `/metrics` request may be answered. With a metrics token set
    (`HOOKLINE_METRICS_TOKEN`, for a scraper's `authorization: {credentials: ...}`), only with
    it; without one, only on a loopback listen: the labels name every tenant's triggers."""
    if token is None:
        return loopback
    scheme, _, given = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.strip().encode())


def refused_metrics(configured: bool = True) -> Response[bytes]:
    """401 for a `/metrics` request without the metrics token (or with none configured)."""
    detail = (
        "metrics need the metrics token (Authorization: Bearer ...)"
        if configured
        else "metrics off this machine need HOOKLINE_METRICS_TOKEN set (Authorization: Bearer ...)"
    )
    body = _json.encode(
        {"type": "/problems/unauthorized", "title": "Unauthorized", "status": 401, "detail": detail}
    )
    return Response(body, status_code=401, media_type="application/problem+json")


def probe_app(checks: Checks, metrics_token: str | None = None, loopback: bool = True) -> Litestar:
    """The three probe routes; readiness is what `checks` says."""

    @get("/metrics")
    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        if not metrics_allowed(request.headers.get("authorization"), metrics_token, loopback):
            return refused_metrics(metrics_token is not None)
        return Response(generate_latest(), media_type="text/plain; version=0.0.4")

    @get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz")
    async def readyz() -> Response[bytes]:
        results = await checks()
        ready = all(results.values())
        body = _json.encode({"ready": ready, "checks": results})
        return Response(body, status_code=200 if ready else 503, media_type="application/json")

    return Litestar(route_handlers=[metrics, healthz, readyz], openapi_config=None)


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: the service's own handlers stop it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ProbeServer:
    """The probe app on `host:port`, started and stopped with the service."""

    def __init__(
        self, service: str, host: str, port: int, checks: Checks, metrics_token: str | None = None
    ) -> None:
        config = uvicorn.Config(
            probe_app(checks, metrics_token, loopback_only(host)),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            # A scrape or probe still open at the stop gets this long, then is closed.
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._service = service
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name=f"{self._service}-probes")
        while not self._server.started and not self._task.done():  # noqa: ASYNC110 (uvicorn has only a flag)
            await asyncio.sleep(0.01)
        if self._task.done():
            await self._task  # raises why it could not start (port in use)
            return
        log.info("metrics and probes on port %d", self.port, extra={"service": self._service})

    @property
    def port(self) -> int:
        """The port bound (the one picked, when asked for 0)."""
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return 0

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def database_ready(pool: asyncpg.Pool) -> bool:
    """Whether PostgreSQL answers a trivial query within two seconds."""
    try:
        async with pool.acquire(timeout=2) as connection:
            await connection.execute("select 1")
    except (*DB_ERRORS, asyncpg.PostgresError):  # type: ignore[misc]
        return False
    return True


async def start_probes(
    service: str, host: str, port: int | None, checks: Checks, metrics_token: str | None = None
) -> ProbeServer | None:
    """The probe server on `port` if one is configured (None: off)."""
    if port is None:
        return None
    server = ProbeServer(service, host, port, checks, metrics_token)
    await server.start()
    return server
