"""The status URL of an execution, for its caller: authenticated like the trigger itself."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, get

from ingress.api.access import database
from ingress.dependencies import HooksDep, PoolDep
from ingress.hooks import caller_of
from ingress.problems import SANDBOX_HEADERS
from shared.db.executions import get_execution_and_caller
from shared.errors import NotFound

_json = msgspec.json.Encoder()
SHOWN = ("id", "status", "attempts", "received_at", "finished_at", "output", "response", "error")


@get("/hooks/{workspace:str}/{trigger:str}/executions/{execution_id:str}", include_in_schema=False)
async def execution_status(
    request: Request[Any, Any, Any],
    hooks: HooksDep,
    pool: PoolDep,
    workspace: str,
    trigger: str,
    execution_id: str,
) -> Response[bytes]:
    """`GET /hooks/{workspace}/{trigger}/executions/{id}` (not part of the management API)."""
    entry = hooks.lookup(workspace, trigger)
    # Authenticated like the trigger; a signed trigger's caller signs the empty body.
    identity = await entry.auth.before_body(request.headers)
    entry.auth.after_body(b"", request.headers, time.time())
    async with database(pool) as connection:
        found, caller = await get_execution_and_caller(connection, execution_id)
    # Another consumer's execution is not there for this one (as with idempotent repeats).
    other_callers = caller is not None and caller != caller_of(identity)
    if found.workspace != workspace or found.trigger != trigger or other_callers:
        raise NotFound(f"no execution {execution_id} for this trigger")
    view = {k: getattr(found, k) for k in SHOWN}
    return Response(_json.encode(view), media_type="application/json", headers=SANDBOX_HEADERS)
