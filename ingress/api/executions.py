"""`/api/executions`: the run log (filtered, paged by cursor), one run in full, and replay."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import get, post
from litestar.params import Parameter

from ingress.api.access import Scope, database
from ingress.api.resources import Resources
from shared.db.executions import Execution, get_execution
from shared.db.runlog import RunFilter, RunPage, list_runs
from shared.errors import NotFound
from shared.ops.replay import replay_invocation
from shared.wire import topology

Limit = Annotated[int, Parameter(ge=1, le=500, description="runs per page")]


class Replayed(msgspec.Struct, kw_only=True):
    """A replay: the new execution, and the one it replays."""

    execution_id: str
    replay_of: str
    trigger_version: int


async def visible_execution(res: Resources, access: Scope, execution_id: str) -> Execution:
    """An execution the token may see (another workspace's is as good as missing)."""
    async with database(res) as connection:
        execution = await get_execution(connection, execution_id)
    if access.workspace is not None and execution.workspace != access.workspace:
        raise NotFound(f"no execution {execution_id}")
    return execution


async def replay(res: Resources, access: Scope, execution_id: str) -> Replayed:
    """Run an execution's request again as a new execution (the trigger's current version)."""
    await visible_execution(res, access, execution_id)
    async with database(res) as connection:
        invocation, key = await replay_invocation(connection, execution_id)
    await res.publisher.publish(
        invocation,
        topology.routing_key(invocation.workspace, invocation.trigger),
        want_reply=False,
        ordering_key=key,
    )
    return Replayed(execution_id=invocation.id, replay_of=execution_id, trigger_version=invocation.version)


def routes(res: Resources) -> list[Any]:
    """The run-log handlers."""

    @get("/executions", summary="The run log, newest first; `next_cursor` pages on")
    async def list_all(
        access: Scope,
        workspace: str | None = None,
        trigger: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: Limit = 50,
    ) -> RunPage:
        where = RunFilter(access.narrow(workspace), trigger, status, since, until, cursor)
        async with database(res) as connection:
            return await list_runs(connection, where, limit)

    @get("/executions/{execution_id:str}", summary="One execution: request, steps, output, error")
    async def show(access: Scope, execution_id: str) -> Execution:
        return await visible_execution(res, access, execution_id)

    @post("/executions/{execution_id:str}/replay", summary="Replay an execution", status_code=202)
    async def replay_one(access: Scope, execution_id: str) -> Replayed:
        return await replay(res, access, execution_id)

    return [list_all, show, replay_one]
