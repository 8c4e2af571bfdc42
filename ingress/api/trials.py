"""`POST /api/workspaces/{workspace}/triggers/{name}/try`: send the trigger a real call, as
its callers would (ingress/trials.py), and see the answer and the execution it made."""

from __future__ import annotations

import contextlib
from typing import Any

from litestar import Controller, Request, post

from ingress.api.access import database, visible_workspace
from ingress.dependencies import PoolDep, RegistryDep, SettingsDep
from ingress.errors import TriggerNotFound
from ingress.trials import TryAnswer, TryCall, prepare, try_trigger
from shared.db.triggers import Sample, latest_sample
from shared.errors import NotFound


class TrialController(Controller):
    """The try-it handler, for a workspace the token sees."""

    path = "/workspaces/{workspace:str}/triggers/{name:str}/try"
    guards = [visible_workspace]

    @post(
        summary="Send a real call (the last sample's, unless given), authenticated as the trigger wants",
        status_code=200,
    )
    async def try_it(
        self,
        request: Request[Any, Any, Any],
        pool: PoolDep,
        registry: RegistryDep,
        settings: SettingsDep,
        workspace: str,
        name: str,
        data: TryCall | None = None,
    ) -> TryAnswer:
        call = data or TryCall()
        entry = registry.get(workspace, name)
        if entry is None:
            raise TriggerNotFound(f"no trigger {name!r} in workspace {workspace!r}")
        sample: Sample | None = None
        async with database(pool) as connection:
            with contextlib.suppress(NotFound):
                sample = await latest_sample(connection, workspace, name)
        prepared = prepare(call, sample)
        return await try_trigger(
            request.app, settings.public_url, lambda: database(pool), registry, entry, prepared, call.password
        )
