"""`/api/workspaces`: list, show and create workspaces."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post

from ingress.api.access import AccessDep, admin_only, database, visible_workspace
from ingress.dependencies import PoolDep
from shared.db.workspaces import WorkspaceInfo, create_workspace, get_workspace, list_workspaces


class NewWorkspace(msgspec.Struct, forbid_unknown_fields=True):
    """A workspace to create (or whose description to change)."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class WorkspaceController(Controller):
    """The workspace handlers."""

    path = "/workspaces"

    @get(summary="List the workspaces this token sees")
    async def list_all(self, pool: PoolDep, access: AccessDep) -> list[WorkspaceInfo]:
        async with database(pool) as connection:
            return await list_workspaces(connection, access.workspace)

    @post(summary="Create a workspace (admin)", status_code=201, guards=[admin_only])
    async def create(self, pool: PoolDep, data: NewWorkspace) -> Response[WorkspaceInfo]:
        async with database(pool) as connection:
            workspace, created = await create_workspace(connection, data.name, data.description)
        return Response(workspace, status_code=201 if created else 200)

    @get("/{workspace:str}", summary="Show a workspace", guards=[visible_workspace])
    async def show(self, pool: PoolDep, workspace: str) -> WorkspaceInfo:
        async with database(pool) as connection:
            return await get_workspace(connection, workspace)
