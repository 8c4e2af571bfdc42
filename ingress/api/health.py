"""`/healthz` (the process answers), `/readyz` (broker, database, registry), `/metrics`."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response, get

from ingress import metrics
from ingress.api.resources import Resources
from shared.db.pool import DB_ERRORS
from shared.runtime.probes import loopback_only, metrics_allowed, refused_metrics

_json = msgspec.json.Encoder()


async def readiness(res: Resources) -> dict[str, bool]:
    """What `/readyz` checks: the broker link, the registry loaded, PostgreSQL answering."""
    checks = {"broker": res.publisher.ready, "registry": res.registry.loaded}
    try:
        async with res.pool.acquire(timeout=2) as connection:
            await connection.execute("select 1")
        checks["database"] = True
    except (*DB_ERRORS, asyncpg.PostgresError):  # type: ignore[misc]
        checks["database"] = False
    return checks


def health_routes(res: Resources) -> list[Any]:
    """Probes and metrics, kept out of the API schema."""

    token = res.settings.metrics_token
    loopback = loopback_only(res.settings.host)

    @get("/metrics", include_in_schema=False)
    async def prometheus(request: Request[Any, Any, Any]) -> Response[bytes]:
        if not metrics_allowed(request.headers.get("authorization"), token, loopback):
            return refused_metrics(token is not None)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", include_in_schema=False)
    async def readyz() -> Response[bytes]:
        checks = await readiness(res)
        ready = all(checks.values())
        return Response(
            _json.encode({"ready": ready, "checks": checks}),
            status_code=200 if ready else 503,
            media_type="application/json",
        )

    return [healthz, readyz, prometheus]
