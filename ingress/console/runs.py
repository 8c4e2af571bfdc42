"""The console's run log (with its live rows), one execution, and replaying it."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from litestar import Controller, get, post
from litestar.params import Parameter
from litestar.response import Redirect, Template

from ingress.api.access import AccessDep, Scope, database
from ingress.api.executions import replay, visible_execution
from ingress.console.charts import chart
from ingress.console.session import CsrfDep
from ingress.console.triggers import Hours, triggers_of
from ingress.dependencies import PoolDep, PublisherDep
from shared.db.runlog import STATUSES, RunFilter, RunPage, list_runs
from shared.db.trends import per_minute
from shared.errors import NotFound

PAGE = 50
Text = Annotated[str | None, Parameter(max_length=200)]


def trigger_filter(scope: Scope, trigger: str | None) -> tuple[str | None, str | None]:
    """`workspace/trigger` from the run-log filter -> (workspace, trigger), within the scope."""
    if not trigger:
        return scope.workspace, None
    workspace, _, name = trigger.partition("/")
    scope.check(workspace)
    return workspace, name or None


async def runs_page(
    pool: asyncpg.Pool, scope: Scope, status: str | None, trigger: str | None, cursor: str | None
) -> RunPage:
    workspace, name = trigger_filter(scope, trigger)
    where = RunFilter(workspace, name, status or None, before=cursor or None)
    async with database(pool) as connection:
        return await list_runs(connection, where, PAGE)


class RunController(Controller):
    """`/console/runs` and `/console/executions`."""

    @get("/runs")
    async def runs(
        self,
        pool: PoolDep,
        access: AccessDep,
        csrf: CsrfDep,
        status: Text = None,
        trigger: Text = None,
        cursor: Text = None,
        hours: Hours = 3,
    ) -> Template:
        page = await runs_page(pool, access, status, trigger, cursor)
        workspace, name = trigger_filter(access, trigger)
        async with database(pool) as connection:
            trend = await per_minute(connection, hours, workspace, name)
        context = {
            "scope": access,
            "csrf": csrf,
            "page": page,
            "statuses": STATUSES,
            "triggers": await triggers_of(pool, access),
            "status": status or "",
            "trigger": trigger or "",
            "live": not cursor,
            "chart": chart(trend, hours),
        }
        return Template(template_name="runs.html", context=context)

    @get("/runs/rows")
    async def rows(
        self, pool: PoolDep, access: AccessDep, status: Text = None, trigger: Text = None
    ) -> Template:
        page = await runs_page(pool, access, status, trigger, None)
        return Template(template_name="run_rows.html", context={"page": page})

    @get("/executions/{execution_id:str}")
    async def execution(
        self,
        pool: PoolDep,
        access: AccessDep,
        csrf: CsrfDep,
        execution_id: str,
        replayed_from: Text = None,
        queued: bool = False,
    ) -> Template:
        try:
            found = await visible_execution(pool, access, execution_id)
        except NotFound:
            # A replay, or a tried call the trigger queued (202): shown once a worker runs it.
            if not (replayed_from or queued):
                raise
            context = {
                "scope": access,
                "csrf": csrf,
                "execution_id": execution_id,
                "replayed_from": replayed_from,
            }
            return Template(template_name="queued.html", context=context)
        return Template(template_name="execution.html", context={"scope": access, "csrf": csrf, "e": found})

    @post("/executions/{execution_id:str}/replay", status_code=303)
    async def replay_execution(
        self, pool: PoolDep, publisher: PublisherDep, access: AccessDep, execution_id: str
    ) -> Redirect:
        replayed = await replay(pool, publisher, access, execution_id)
        return Redirect(
            f"/console/executions/{replayed.execution_id}?replayed_from={execution_id}", status_code=303
        )
