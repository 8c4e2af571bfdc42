"""`/api/executions`: the run log (filtered, paged by cursor), one run in full, and replay."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, get, post
from litestar.params import Parameter

from ingress.api.access import AccessDep, Scope, database
from ingress.dependencies import PoolDep, PublisherDep
from ingress.publishing import InvocationPublisher
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


async def visible_execution(pool: asyncpg.Pool, access: Scope, execution_id: str) -> Execution:
    """An execution the token may see (another workspace's is as good as missing)."""
    async with database(pool) as connection:
        execution = await get_execution(connection, execution_id)
    if access.workspace is not None and execution.workspace != access.workspace:
        raise NotFound(f"no execution {execution_id}")
    return execution


async def replay(
    pool: asyncpg.Pool, publisher: InvocationPublisher, access: Scope, execution_id: str
) -> Replayed:
    """Run an execution's request again as a new execution (the trigger's current version)."""
    await visible_execution(pool, access, execution_id)
    async with database(pool) as connection:
        invocation, key = await replay_invocation(connection, execution_id)
    await publisher.publish(
        invocation,
        topology.routing_key(invocation.workspace, invocation.trigger),
        want_reply=False,
        ordering_key=key,
    )
    return Replayed(execution_id=invocation.id, replay_of=execution_id, trigger_version=invocation.version)


class ExecutionController(Controller):
    """The run-log handlers."""

    path = "/executions"

    @get(summary="The run log, newest first; `next_cursor` pages on")
    async def list_all(
        self,
        pool: PoolDep,
        access: AccessDep,
        workspace: str | None = None,
        trigger: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: Limit = 50,
    ) -> RunPage:
        where = RunFilter(access.narrow(workspace), trigger, status, since, until, cursor)
        async with database(pool) as connection:
            return await list_runs(connection, where, limit)

    @get("/{execution_id:str}", summary="One execution: request, steps, output, error")
    async def show(self, pool: PoolDep, access: AccessDep, execution_id: str) -> Execution:
        return await visible_execution(pool, access, execution_id)

    @post("/{execution_id:str}/replay", summary="Replay an execution", status_code=202)
    async def replay_one(
        self, pool: PoolDep, publisher: PublisherDep, access: AccessDep, execution_id: str
    ) -> Replayed:
        return await replay(pool, publisher, access, execution_id)
