"""`/healthz` (the process answers), `/readyz` (broker, database, registry), `/metrics`."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response, get

from ingress import metrics
from ingress.dependencies import PoolDep, PublisherDep, RegistryDep, SettingsDep
from shared.db.pool import DB_ERRORS
from shared.runtime.probes import loopback_only, metrics_allowed, refused_metrics

_json = msgspec.json.Encoder()


async def readiness(pool: PoolDep, publisher: PublisherDep, registry: RegistryDep) -> dict[str, bool]:
    """What `/readyz` checks: the broker link, the registry loaded, PostgreSQL answering."""
    checks = {"broker": publisher.ready, "registry": registry.loaded}
    try:
        async with pool.acquire(timeout=2) as connection:
            await connection.execute("select 1")
        checks["database"] = True
    except (*DB_ERRORS, asyncpg.PostgresError):  # type: ignore[misc]
        checks["database"] = False
    return checks


@get("/metrics", include_in_schema=False)
async def prometheus(request: Request[Any, Any, Any], settings: SettingsDep) -> Response[bytes]:
    token = settings.metrics_token
    if not metrics_allowed(request.headers.get("authorization"), token, loopback_only(settings.host)):
        return refused_metrics(token is not None)
    return Response(metrics.render(), media_type="text/plain; version=0.0.4")


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(pool: PoolDep, publisher: PublisherDep, registry: RegistryDep) -> Response[bytes]:
    checks = await readiness(pool, publisher, registry)
    ready = all(checks.values())
    return Response(
        _json.encode({"ready": ready, "checks": checks}),
        status_code=200 if ready else 503,
        media_type="application/json",
    )


HEALTH_ROUTES = [healthz, readyz, prometheus]  # probes and metrics, kept out of the API schema
