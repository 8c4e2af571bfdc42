"""`/api/workspaces/{workspace}/triggers`: define, list, version, pause, resume, delete, sample.

A definition is a trigger as written in a trigger file (JSON), validated exactly as
`hookline apply` validates it; every change makes a new version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, post, put

from ingress.api.access import AccessDep, Scope, database, visible_workspace
from ingress.dependencies import CipherDep, PoolDep, SettingsDep
from shared.db.pauses import pause_trigger, resume_trigger
from shared.db.registry import OPERATOR, WORKSPACE, Change
from shared.db.secrets import SecretCipher
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
from shared.settings import Settings
from shared.spec.egress import operator_allow


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


def _author(settings: Settings, cipher: SecretCipher | None, access: Scope) -> dict[str, Any]:
    """Who defines a trigger: the admin token is the operator's, a workspace token the workspace's.

    The workspace's `${env:NAME}` may name only what the operator allowed it, and its
    definitions are held to the egress policy (the operator's `egress_allow` and its own list);
    every definition is held to the deployment's body cap.
    """
    return {
        "author": OPERATOR if access.admin else WORKSPACE,
        "allowed_env": settings.allowed_env,
        "cipher": cipher,
        "egress_allow": operator_allow(settings.egress_allow),
        "max_body_bytes": settings.max_body_bytes,
    }


class TriggerController(Controller):
    """The trigger handlers, for a workspace the token sees."""

    path = "/workspaces/{workspace:str}/triggers"
    guards = [visible_workspace]

    @get(summary="List a workspace's triggers")
    async def list_all(
        self, pool: PoolDep, settings: SettingsDep, workspace: str, deleted: bool = False
    ) -> list[TriggerView]:
        async with database(pool) as connection:
            return [view(t, settings.public_url) for t in await list_triggers(connection, workspace, deleted)]

    @post(summary="Create a trigger from its definition", status_code=201)
    async def create(
        self,
        pool: PoolDep,
        settings: SettingsDep,
        cipher: CipherDep,
        access: AccessDep,
        workspace: str,
        data: dict[str, Any],
    ) -> Applied:
        async with database(pool) as connection:
            return applied(
                await define_trigger(
                    connection, workspace, data, create=True, **_author(settings, cipher, access)
                )
            )

    @get("/{name:str}", summary="Show a trigger and its current definition")
    async def show(self, pool: PoolDep, settings: SettingsDep, workspace: str, name: str) -> TriggerView:
        async with database(pool) as connection:
            info, spec = await get_trigger(connection, workspace, name)
        return view(info, settings.public_url, spec)

    @put("/{name:str}", summary="Update a trigger (a new version when it changed)")
    async def update(
        self,
        pool: PoolDep,
        settings: SettingsDep,
        cipher: CipherDep,
        access: AccessDep,
        workspace: str,
        name: str,
        data: dict[str, Any],
    ) -> Applied:
        async with database(pool) as connection:
            change = await define_trigger(
                connection, workspace, data, create=False, name=name, **_author(settings, cipher, access)
            )
            return applied(change)

    @delete("/{name:str}", summary="Delete a trigger (its runs and versions are kept)")
    async def remove(self, pool: PoolDep, workspace: str, name: str) -> None:
        async with database(pool) as connection:
            await delete_trigger(connection, workspace, name)

    @get("/{name:str}/versions", summary="Every version of a trigger, newest first")
    async def versions(self, pool: PoolDep, workspace: str, name: str) -> list[TriggerVersion]:
        async with database(pool) as connection:
            return await list_versions(connection, workspace, name)

    @post("/{name:str}/pause", summary="Pause: hold async calls on the broker, refuse others")
    async def pause(
        self, pool: PoolDep, settings: SettingsDep, workspace: str, name: str
    ) -> Response[TriggerView]:
        return Response(await _paused(pool, settings, workspace, name, pause=True), status_code=200)

    @post("/{name:str}/resume", summary="Resume: the held calls run (in order, if ordered)")
    async def resume(
        self, pool: PoolDep, settings: SettingsDep, workspace: str, name: str
    ) -> Response[TriggerView]:
        return Response(await _paused(pool, settings, workspace, name, pause=False), status_code=200)

    @get("/{name:str}/sample", summary="The last accepted call, as a workflow sees `request`")
    async def sample(self, pool: PoolDep, workspace: str, name: str) -> Sample:
        async with database(pool) as connection:
            return await latest_sample(connection, workspace, name)


async def _paused(
    pool: asyncpg.Pool, settings: Settings, workspace: str, name: str, *, pause: bool
) -> TriggerView:
    """Pause or resume a trigger; the trigger as it is now."""
    async with database(pool) as connection:
        await (pause_trigger if pause else resume_trigger)(connection, workspace, name)
        info, _ = await get_trigger(connection, workspace, name)
    return view(info, settings.public_url)
