"""The management API under `/api` (one module per resource), described at `/api/schema`."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, Response, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from ingress.api import deadletters, egress, executions, keys, queues, secrets, tokens, triggers, workspaces
from ingress.api.access import scope_provider
from ingress.api.health import health_routes
from ingress.api.resources import MAX_BODY_BYTES, Resources
from ingress.api.status import status_route
from ingress.problems import problem_response

__all__ = ["Resources", "api_router", "health_routes", "openapi_config", "status_route"]

MODULES = (workspaces, triggers, egress, keys, secrets, executions, deadletters, queues, tokens)


def api_router(res: Resources) -> Router:
    """Every `/api` handler, each needing a management token (the `access` dependency)."""
    return Router(
        path="/api",
        # Read (and parsed) before the token is checked: keep what a stranger can make us read small.
        request_max_body_size=MAX_BODY_BYTES,
        route_handlers=[handler for module in MODULES for handler in module.routes(res)],
        dependencies={"access": Provide(scope_provider(res))},
        exception_handlers={asyncpg.DataError: _bad_data},
        security=[{"bearer": []}],
    )


def _bad_data(_: Request[Any, Any, Any], exc: asyncpg.DataError) -> Response[bytes]:
    # Input PostgreSQL cannot take (a NUL character, an out-of-range number) is the caller's.
    return problem_response(400, "bad-request", "Bad request", "a value cannot be used as given")


def openapi_config() -> OpenAPIConfig:
    """The schema of the management API, as JSON at `/api/schema` (and `/api/schema/openapi.json`)."""
    return OpenAPIConfig(
        title="hookline management API",
        version="1",
        description=(
            "Workspaces, triggers, API keys, the run log, dead letters and queues. "
            "Send `Authorization: Bearer <token>`: the admin token, or a workspace token "
            "made with `hookline tokens create`. Errors are RFC 9457 problem documents."
        ),
        path="/api/schema",
        render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])],
        components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
    )
