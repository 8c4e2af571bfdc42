"""Management API (admin token), the status URL of an execution, health and readiness."""

from __future__ import annotations

import hmac
import time
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response, get

from ingress import metrics
from ingress.errors import AdminUnauthorized
from ingress.hooks import Hooks
from ingress.publishing import InvocationPublisher
from ingress.registry import TriggerRegistry
from shared.db.executions import get_execution
from shared.db.pool import DB_ERRORS
from shared.errors import DatabaseUnavailable, NotFound

_json = msgspec.json.Encoder()


def check_admin(request: Request[Any, Any, Any], token: str | None) -> None:
    """Raise unless the caller sent `Authorization: Bearer <admin token>`."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if (
        token is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(given.strip().encode(), token.encode())
    ):
        raise AdminUnauthorized("a valid admin token is required (Authorization: Bearer ...)")


async def fetch_execution(pool: asyncpg.Pool, execution_id: str) -> bytes:
    try:
        async with pool.acquire() as connection:
            execution = await get_execution(connection, execution_id)
    except DB_ERRORS:
        raise DatabaseUnavailable("the run log is unreachable right now") from None
    return _json.encode(execution)


class Resources:
    """What one ingress process opens in its lifespan; routes read it at call time."""

    pool: asyncpg.Pool
    hooks: Hooks
    publisher: InvocationPublisher
    registry: TriggerRegistry


def build_routes(res: Resources, admin_token: str | None) -> list[Any]:
    """The management and status routes."""

    @get("/api/executions/{execution_id:str}")
    async def show_execution(request: Request[Any, Any, Any], execution_id: str) -> Response[bytes]:
        check_admin(request, admin_token)
        return Response(await fetch_execution(res.pool, execution_id), media_type="application/json")

    @get("/hooks/{workspace:str}/{trigger:str}/executions/{execution_id:str}")
    async def execution_status(
        request: Request[Any, Any, Any], workspace: str, trigger: str, execution_id: str
    ) -> Response[bytes]:
        entry = res.hooks.lookup(workspace, trigger)
        # Authenticated like the trigger; a signed trigger's caller signs the empty body.
        await entry.auth.before_body(request.headers)
        entry.auth.after_body(b"", request.headers, time.time())
        body = await fetch_execution(res.pool, execution_id)
        found = msgspec.json.decode(body)
        if found["workspace"] != workspace or found["trigger"] != trigger:
            raise NotFound(f"no execution {execution_id} for this trigger")
        view = {
            k: found[k]
            for k in (
                "id",
                "status",
                "attempts",
                "received_at",
                "finished_at",
                "output",
                "response",
                "error",
            )
        }
        return Response(_json.encode(view), media_type="application/json")

    return [show_execution, execution_status]


def health_routes(res: Resources) -> list[Any]:
    """`/healthz`: the process answers. `/readyz`: broker and database reachable, registry loaded."""

    @get("/metrics")
    async def prometheus() -> Response[bytes]:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz")
    async def readyz() -> Response[bytes]:
        checks = {"broker": res.publisher.ready, "registry": res.registry.loaded}
        try:
            async with res.pool.acquire(timeout=2) as connection:
                await connection.execute("select 1")
            checks["database"] = True
        except (*DB_ERRORS, asyncpg.PostgresError):  # type: ignore[misc]
            checks["database"] = False
        ready = all(checks.values())
        return Response(
            _json.encode({"ready": ready, "checks": checks}),
            status_code=200 if ready else 503,
            media_type="application/json",
        )

    return [healthz, readyz, prometheus]
