"""`/api/workspaces/{workspace}/triggers`: define, list, version, pause, resume, delete, sample.

A definition is a trigger as written in a trigger file (JSON), validated exactly as
`hookline apply` validates it; every change makes a new version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Response, delete, get, post, put

from ingress.api.access import Scope, database
from ingress.api.resources import Resources
from shared.db.pauses import pause_trigger, resume_trigger
from shared.db.registry import OPERATOR, WORKSPACE, Change
from shared.db.triggers import (
    KeyLabel,
    Sample,
    TriggerInfo,
    TriggerVersion,
    define_trigger,
    delete_trigger,
    get_trigger,
    latest_sample,
    list_triggers,
    list_versions,
)
from shared.spec.egress import AllowEntry, operator_allow


class TriggerView(msgspec.Struct, kw_only=True):
    """A trigger as the API shows it: where to call it, how, and its current definition."""

    workspace: str
    name: str
    url: str
    version: int
    description: str
    mode: str
    methods: list[str]
    auth: str
    ordered: Any
    paused: bool
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    keys: list[KeyLabel]
    spec: Any = None


class Applied(msgspec.Struct, kw_only=True):
    """What a definition did: created, updated (a new version) or unchanged."""

    workspace: str
    trigger: str
    action: str
    version: int | None


def view(info: TriggerInfo, base_url: str, spec: Any = None) -> TriggerView:
    """TriggerInfo with its full URL (and definition, when shown alone)."""
    fields = {k: getattr(info, k) for k in TriggerInfo.__dataclass_fields__}
    return TriggerView(**fields, url=base_url + info.path, spec=spec)


def applied(change: Change) -> Applied:
    return Applied(
        workspace=change.workspace, trigger=change.trigger or "", action=change.action, version=change.version
    )


def _author(res: Resources, access: Scope, egress_allow: tuple[AllowEntry, ...]) -> dict[str, Any]:
    """Who defines a trigger: the admin token is the operator's, a workspace token the workspace's.

    The workspace's `${env:NAME}` may name only what the operator allowed it, and its
    definitions are held to the egress policy (`egress_allow` and its own list).
    """
    return {
        "author": OPERATOR if access.admin else WORKSPACE,
        "allowed_env": res.settings.allowed_env,
        "cipher": res.cipher,
        "egress_allow": egress_allow,
    }


def routes(res: Resources) -> list[Any]:
    """The trigger handlers."""
    base = "/workspaces/{workspace:str}/triggers"
    public = res.settings.public_url
    egress_allow = operator_allow(res.settings.egress_allow)
    cap = res.settings.max_body_bytes

    @get(base, summary="List a workspace's triggers")
    async def list_all(access: Scope, workspace: str, deleted: bool = False) -> list[TriggerView]:
        access.check(workspace)
        async with database(res) as connection:
            return [view(t, public) for t in await list_triggers(connection, workspace, deleted)]

    @post(base, summary="Create a trigger from its definition", status_code=201)
    async def create(access: Scope, workspace: str, data: dict[str, Any]) -> Applied:
        access.check(workspace)
        async with database(res) as connection:
            return applied(
                await define_trigger(
                    connection,
                    workspace,
                    data,
                    create=True,
                    max_body_bytes=cap,
                    **_author(res, access, egress_allow),
                )
            )

    @get(base + "/{name:str}", summary="Show a trigger and its current definition")
    async def show(access: Scope, workspace: str, name: str) -> TriggerView:
        access.check(workspace)
        async with database(res) as connection:
            info, spec = await get_trigger(connection, workspace, name)
        return view(info, public, spec)

    @put(base + "/{name:str}", summary="Update a trigger (a new version when it changed)")
    async def update(access: Scope, workspace: str, name: str, data: dict[str, Any]) -> Applied:
        access.check(workspace)
        async with database(res) as connection:
            change = await define_trigger(
                connection,
                workspace,
                data,
                create=False,
                name=name,
                max_body_bytes=cap,
                **_author(res, access, egress_allow),
            )
            return applied(change)

    @delete(base + "/{name:str}", summary="Delete a trigger (its runs and versions are kept)")
    async def remove(access: Scope, workspace: str, name: str) -> None:
        access.check(workspace)
        async with database(res) as connection:
            await delete_trigger(connection, workspace, name)

    @get(base + "/{name:str}/versions", summary="Every version of a trigger, newest first")
    async def versions(access: Scope, workspace: str, name: str) -> list[TriggerVersion]:
        access.check(workspace)
        async with database(res) as connection:
            return await list_versions(connection, workspace, name)

    @post(base + "/{name:str}/pause", summary="Pause: hold async calls on the broker, refuse others")
    async def pause(access: Scope, workspace: str, name: str) -> Response[TriggerView]:
        access.check(workspace)
        async with database(res) as connection:
            await pause_trigger(connection, workspace, name)
            info, _ = await get_trigger(connection, workspace, name)
        return Response(view(info, public), status_code=200)

    @post(base + "/{name:str}/resume", summary="Resume: the held calls run (in order, if ordered)")
    async def resume(access: Scope, workspace: str, name: str) -> Response[TriggerView]:
        access.check(workspace)
        async with database(res) as connection:
            await resume_trigger(connection, workspace, name)
            info, _ = await get_trigger(connection, workspace, name)
        return Response(view(info, public), status_code=200)

    @get(base + "/{name:str}/sample", summary="The last accepted call, as a workflow sees `request`")
    async def sample(access: Scope, workspace: str, name: str) -> Sample:
        access.check(workspace)
        async with database(res) as connection:
            return await latest_sample(connection, workspace, name)

    return [list_all, create, show, update, remove, versions, pause, resume, sample]
