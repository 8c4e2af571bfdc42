"""The console's triggers: the list, one trigger's page (try it, refused calls, variables,
keys, charts), its key forms, pause and resume.

Every form goes through the same shared functions as the API (shared/db/keys.py,
ingress/trials.py) and the `same_console` CSRF guard the router sets.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.response import Redirect, Template

from ingress.api.access import AccessDep, Scope, database, visible_workspace
from ingress.console.charts import chart
from ingress.console.session import CsrfDep
from ingress.dependencies import PoolDep, RegistryDep, SettingsDep
from ingress.errors import BadRequest, TriggerNotFound
from ingress.registry import TriggerRegistry
from ingress.trials import TryAnswer, TryCall, prepare, try_trigger
from shared.db import keys
from shared.db.keys import create_key
from shared.db.pauses import pause_trigger, resume_trigger
from shared.db.rejected_calls import list_rejected
from shared.db.trends import MAX_HOURS, per_minute
from shared.db.triggers import (
    Sample,
    TriggerInfo,
    get_trigger,
    latest_sample,
    list_triggers,
    list_versions,
)
from shared.errors import HooklineError, NotFound
from shared.ops.sample_paths import sample_paths

FORM = Body(media_type=RequestEncodingType.URL_ENCODED)
ONE = "/triggers/{workspace:str}/{name:str}"


REFUSED_SHOWN = 20
Hours = Annotated[int, Parameter(ge=1, le=MAX_HOURS, description="hours the charts cover")]
Label = Annotated[str, msgspec.Meta(max_length=200)]


class KeyForm(msgspec.Struct):
    """The create-key form of a trigger (its CSRF value is checked by the `same_console` guard)."""

    label: Label = ""


class PasteForm(msgspec.Struct):
    """An existing key to store (as its digest) for this trigger."""

    key: Annotated[str, msgspec.Meta(max_length=500)]
    label: Label = ""


class RelabelForm(msgspec.Struct):
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class AttachForm(msgspec.Struct):
    """Another trigger of the workspace the key should (or should no longer) open."""

    trigger: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class TryForm(msgspec.Struct):
    """The try-it form: what to send, as text (headers one `Name: value` a line)."""

    method: Annotated[str, msgspec.Meta(max_length=16)] = "POST"
    query: str = ""
    headers: str = ""
    body: str = ""
    password: Annotated[str, msgspec.Meta(max_length=500)] = ""


class Prefill(msgspec.Struct):
    """What the try-it form shows before it is sent: the last sample's call, or the form's."""

    method: str
    query: str
    headers: str
    body: str


def header_lines(text: str) -> dict[str, str]:
    """`Name: value` lines (blank lines skipped) -> headers; a line without a colon is refused."""
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise BadRequest(f"header line {line[:40]!r} is not `Name: value`")
        headers[name.strip()] = value.strip()
    return headers


def prefill(sample: Sample | None) -> Prefill:
    """The last sample's call as the form's text (a body that is not text shows as replaced)."""
    if sample is None:
        return Prefill("POST", "", "content-type: application/json", "{}")
    prepared = prepare(TryCall(), sample)
    return Prefill(
        method=prepared.method,
        query=prepared.query,
        headers="\n".join(f"{k}: {v}" for k, v in prepared.headers.items()),
        body=prepared.body.decode("utf-8", errors="replace"),
    )


async def triggers_of(pool: asyncpg.Pool, scope: Scope) -> list[TriggerInfo]:
    async with database(pool) as connection:
        return await list_triggers(connection, scope.workspace)


class TriggerController(Controller):
    """`/console/triggers` and one trigger's page and forms."""

    @get("/triggers")
    async def triggers(
        self, pool: PoolDep, settings: SettingsDep, access: AccessDep, csrf: CsrfDep
    ) -> Template:
        context = {
            "scope": access,
            "csrf": csrf,
            "triggers": await triggers_of(pool, access),
            "base_url": settings.public_url,
        }
        return Template(template_name="triggers.html", context=context)

    @get(ONE, guards=[visible_workspace])
    async def trigger(
        self,
        pool: PoolDep,
        settings: SettingsDep,
        access: AccessDep,
        csrf: CsrfDep,
        workspace: str,
        name: str,
        hours: Hours = 3,
    ) -> Template:
        context = await trigger_page(pool, workspace, name, hours)
        context.update(scope=access, csrf=csrf, base_url=settings.public_url)
        return Template(template_name="trigger.html", context=context)

    @post(ONE + "/try", guards=[visible_workspace], status_code=200)
    async def try_it(
        self,
        request: Request[Any, Any, Any],
        pool: PoolDep,
        registry: RegistryDep,
        settings: SettingsDep,
        access: AccessDep,
        csrf: CsrfDep,
        workspace: str,
        name: str,
        data: Annotated[TryForm, FORM],
    ) -> Template:
        answer: TryAnswer | None = None
        error: str | None = None
        try:
            answer = await try_call(request, pool, registry, settings.public_url, workspace, name, data)
        except (NotFound, TriggerNotFound):
            raise
        except HooklineError as exc:  # a header, the method, a password, the registry: said on the page
            error = str(exc)
        context = await trigger_page(pool, workspace, name, 3)
        form = Prefill(data.method, data.query, data.headers, data.body)
        context.update(
            scope=access, csrf=csrf, base_url=settings.public_url, answer=answer, try_error=error, form=form
        )
        return Template(template_name="trigger.html", context=context)

    @post(ONE + "/keys/paste", guards=[visible_workspace], status_code=303)
    async def paste_key(
        self, pool: PoolDep, workspace: str, name: str, data: Annotated[PasteForm, FORM]
    ) -> Redirect:
        async with database(pool) as connection:
            await create_key(connection, workspace, [name], data.label.strip() or "pasted", data.key.strip())
        return _back(workspace, name)

    @post(ONE + "/keys/{key_id:uuid}/relabel", guards=[visible_workspace], status_code=303)
    async def relabel_key(
        self, pool: PoolDep, workspace: str, name: str, key_id: uuid.UUID, data: Annotated[RelabelForm, FORM]
    ) -> Redirect:
        async with database(pool) as connection:
            await keys.relabel_key(connection, workspace, str(key_id), data.label.strip() or data.label)
        return _back(workspace, name)

    @post(ONE + "/keys/{key_id:uuid}/revoke", guards=[visible_workspace], status_code=303)
    async def revoke_key(self, pool: PoolDep, workspace: str, name: str, key_id: uuid.UUID) -> Redirect:
        async with database(pool) as connection:
            await keys.revoke_key(connection, workspace, str(key_id))
        return _back(workspace, name)

    @post(
        [ONE + "/keys/{key_id:uuid}/attach", ONE + "/keys/{key_id:uuid}/detach"],
        guards=[visible_workspace],
        status_code=303,
    )
    async def attach_or_detach(
        self,
        request: Request[Any, Any, Any],
        pool: PoolDep,
        workspace: str,
        name: str,
        key_id: uuid.UUID,
        data: Annotated[AttachForm, FORM],
    ) -> Redirect:
        change = keys.attach_key if request.url.path.endswith("/attach") else keys.detach_key
        async with database(pool) as connection:
            await change(connection, workspace, str(key_id), [data.trigger])
        return _back(workspace, name)

    @post(ONE + "/keys", guards=[visible_workspace], status_code=200)
    async def new_key(
        self,
        pool: PoolDep,
        settings: SettingsDep,
        access: AccessDep,
        csrf: CsrfDep,
        workspace: str,
        name: str,
        data: Annotated[KeyForm, FORM],
    ) -> Template:
        async with database(pool) as connection:
            created = await create_key(connection, workspace, [name], data.label.strip() or "console")
            triggers = await list_triggers(connection, access.workspace)
        context = {
            "scope": access,
            "csrf": csrf,
            "triggers": triggers,
            "base_url": settings.public_url,
            "created": created,
            "created_for": f"{workspace}/{name}",
        }
        return Template(template_name="triggers.html", context=context)

    @post([ONE + "/pause", ONE + "/resume"], guards=[visible_workspace], status_code=303)
    async def pause_or_resume(
        self, request: Request[Any, Any, Any], pool: PoolDep, workspace: str, name: str
    ) -> Redirect:
        async with database(pool) as connection:
            if request.url.path.endswith("/pause"):
                await pause_trigger(connection, workspace, name)
            else:
                await resume_trigger(connection, workspace, name)
        return Redirect("/console/triggers", status_code=303)


def _back(workspace: str, name: str) -> Redirect:
    return Redirect(f"/console/triggers/{workspace}/{name}#keys", status_code=303)


async def trigger_page(pool: asyncpg.Pool, workspace: str, name: str, hours: int) -> dict[str, Any]:
    """Everything a trigger's page shows (the caller adds the scope, CSRF value and base URL)."""
    async with database(pool) as connection:
        info, spec = await get_trigger(connection, workspace, name)
        versions = await list_versions(connection, workspace, name)
        sample: Sample | None = None
        with contextlib.suppress(NotFound):
            sample = await latest_sample(connection, workspace, name)
        refused = await list_rejected(connection, workspace, name, REFUSED_SHOWN)
        trigger_keys = await keys.list_keys(connection, workspace, name) if info.auth == "api_key" else []
        keyed = [
            t.name
            for t in await list_triggers(connection, workspace)
            if t.auth == "api_key" and t.name != name
        ]
        trend = await per_minute(connection, hours, workspace, name)
    return {
        "t": info,
        "spec": spec,
        "versions": versions,
        "sample": sample,
        "paths": sample_paths(sample.execution_id, sample.request) if sample else None,
        "refused": refused,
        "keys": trigger_keys,
        "keyed_triggers": keyed,
        "chart": chart(trend, hours),
        "form": prefill(sample),
        "answer": None,
        "try_error": None,
    }


async def try_call(
    request: Request[Any, Any, Any],
    pool: asyncpg.Pool,
    registry: TriggerRegistry,
    base_url: str,
    workspace: str,
    name: str,
    form: TryForm,
) -> TryAnswer:
    """Send the form's call through this ingress, authenticated as the trigger wants (as
    `POST /api/.../try` does, with the same functions)."""
    entry = registry.get(workspace, name)
    if entry is None:
        raise TriggerNotFound(f"no trigger {name!r} in workspace {workspace!r}")
    call = TryCall(
        method=form.method.strip() or "POST",
        query=form.query.strip(),
        headers=header_lines(form.headers),
        body=form.body,
        password=form.password or None,
    )
    prepared = prepare(call, None)
    return await try_trigger(
        request.app, base_url, lambda: database(pool), registry, entry, prepared, call.password
    )
