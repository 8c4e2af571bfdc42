"""The management API under `/api` (one controller per resource), described at `/api/schema`.

`token_guard` resolves the bearer token before anything else (the body included); each
controller then holds its routes to what the token sees (`visible_workspace`, `admin_only`)
and names the resources it needs as dependencies (ingress/dependencies.py).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, Response, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from ingress.api.access import MAX_BODY_BYTES, provide_access, token_guard
from ingress.api.deadletters import DeadLetterController
from ingress.api.egress import EgressController
from ingress.api.executions import ExecutionController
from ingress.api.health import HEALTH_ROUTES
from ingress.api.keys import KeyController
from ingress.api.queues import QueueController
from ingress.api.rejected import RejectedController
from ingress.api.sample_paths import SamplePathsController
from ingress.api.secrets import SecretController
from ingress.api.status import execution_status
from ingress.api.tokens import TokenController
from ingress.api.trials import TrialController
from ingress.api.triggers import TriggerController
from ingress.api.workspaces import WorkspaceController
from ingress.problems import problem_response

__all__ = ["HEALTH_ROUTES", "api_router", "execution_status", "openapi_config"]

CONTROLLERS = (
    WorkspaceController,
    TriggerController,
    EgressController,
    KeyController,
    SecretController,
    ExecutionController,
    DeadLetterController,
    QueueController,
    TokenController,
    RejectedController,
    SamplePathsController,
    TrialController,
)


def api_router() -> Router:
    """Every `/api` handler, each needing a management token (`token_guard`, then `access`)."""
    return Router(
        path="/api",
        request_max_body_size=MAX_BODY_BYTES,
        route_handlers=list(CONTROLLERS),
        guards=[token_guard],
        dependencies={"access": Provide(provide_access, sync_to_thread=False)},
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
