"""The console's pages: run log (with its live rows), one execution, triggers, dead letters."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.params import Parameter
from litestar.response import Redirect, Template

from ingress.api.access import Scope, database
from ingress.api.deadletters import dead_letters
from ingress.api.executions import visible_execution
from ingress.api.resources import Resources
from ingress.console.session import login_cookie, new_login_value, secure, signed_in
from shared.db.runlog import STATUSES, RunFilter, RunPage, list_runs
from shared.db.triggers import TriggerInfo, get_trigger, latest_sample, list_triggers, list_versions
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
    res: Resources, scope: Scope, status: str | None, trigger: str | None, cursor: str | None
) -> RunPage:
    workspace, name = trigger_filter(scope, trigger)
    where = RunFilter(workspace, name, status or None, before=cursor or None)
    async with database(res) as connection:
        return await list_runs(connection, where, PAGE)


def sign_in_page(
    res: Resources, request: Request[Any, Any, Any], error: str = "", status: int = 200
) -> Template:
    """The sign-in form, with a fresh login CSRF value (in the form and in a cookie)."""
    value = new_login_value()
    page = Template(template_name="login.html", context={"error": error, "csrf": value}, status_code=status)
    page.set_cookie(login_cookie(value, secure(res, request)))
    return page


def pages(res: Resources) -> list[Any]:
    """The run-log pages of the console."""

    async def triggers_of(scope: Scope) -> list[TriggerInfo]:
        async with database(res) as connection:
            return await list_triggers(connection, scope.workspace)

    @get("/", include_in_schema=False)
    async def home() -> Redirect:
        return Redirect("/console/runs")

    @get("/login", include_in_schema=False)
    async def login_page(request: Request[Any, Any, Any]) -> Template:
        return sign_in_page(res, request)

    @get("/runs", include_in_schema=False)
    async def runs(
        request: Request[Any, Any, Any], status: Text = None, trigger: Text = None, cursor: Text = None
    ) -> Template:
        scope, csrf = await signed_in(res, request)
        page = await runs_page(res, scope, status, trigger, cursor)
        context = {
            "scope": scope,
            "csrf": csrf,
            "page": page,
            "statuses": STATUSES,
            "triggers": await triggers_of(scope),
            "status": status or "",
            "trigger": trigger or "",
            "live": not cursor,
        }
        return Template(template_name="runs.html", context=context)

    @get("/runs/rows", include_in_schema=False)
    async def rows(request: Request[Any, Any, Any], status: Text = None, trigger: Text = None) -> Template:
        scope, _ = await signed_in(res, request)
        page = await runs_page(res, scope, status, trigger, None)
        return Template(template_name="run_rows.html", context={"page": page})

    @get("/executions/{execution_id:str}", include_in_schema=False)
    async def execution(
        request: Request[Any, Any, Any], execution_id: str, replayed_from: Text = None
    ) -> Template:
        scope, csrf = await signed_in(res, request)
        try:
            found = await visible_execution(res, scope, execution_id)
        except NotFound:
            if not replayed_from:
                raise
            context = {
                "scope": scope,
                "csrf": csrf,
                "execution_id": execution_id,
                "replayed_from": replayed_from,
            }
            return Template(template_name="queued.html", context=context)
        return Template(template_name="execution.html", context={"scope": scope, "csrf": csrf, "e": found})

    return [home, login_page, runs, rows, execution]


def trigger_pages(res: Resources) -> list[Any]:
    """The trigger and dead-letter pages."""

    async def triggers_of(scope: Scope) -> list[TriggerInfo]:
        async with database(res) as connection:
            return await list_triggers(connection, scope.workspace)

    @get("/triggers", include_in_schema=False)
    async def triggers(request: Request[Any, Any, Any]) -> Template:
        scope, csrf = await signed_in(res, request)
        context = {
            "scope": scope,
            "csrf": csrf,
            "triggers": await triggers_of(scope),
            "base_url": res.settings.public_url,
        }
        return Template(template_name="triggers.html", context=context)

    @get("/triggers/{workspace:str}/{name:str}", include_in_schema=False)
    async def trigger(request: Request[Any, Any, Any], workspace: str, name: str) -> Template:
        scope, csrf = await signed_in(res, request)
        scope.check(workspace)
        async with database(res) as connection:
            info, spec = await get_trigger(connection, workspace, name)
            versions = await list_versions(connection, workspace, name)
            try:
                sample = await latest_sample(connection, workspace, name)
            except NotFound:
                sample = None
        context = {
            "scope": scope,
            "csrf": csrf,
            "t": info,
            "spec": spec,
            "versions": versions,
            "sample": sample,
            "base_url": res.settings.public_url,
        }
        return Template(template_name="trigger.html", context=context)

    @get("/dead-letters", include_in_schema=False)
    async def dead(request: Request[Any, Any, Any], cursor: Text = None) -> Template:
        scope, csrf = await signed_in(res, request)
        page = await dead_letters(res, scope, None, None, cursor=cursor or None, limit=PAGE)
        context = {"scope": scope, "csrf": csrf, "letters": page.items, "next_cursor": page.next_cursor}
        return Template(template_name="dead_letters.html", context=context)

    return [triggers, trigger, dead]
