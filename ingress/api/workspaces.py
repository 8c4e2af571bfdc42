"""`/api/workspaces`: list, show and create workspaces."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Response, get, post

from ingress.api.access import Scope, database
from ingress.api.resources import Resources
from shared.db.workspaces import WorkspaceInfo, create_workspace, get_workspace, list_workspaces


class NewWorkspace(msgspec.Struct, forbid_unknown_fields=True):
    """A workspace to create (or whose description to change)."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""


def routes(res: Resources) -> list[Any]:
    """The workspace handlers."""

    @get("/workspaces", summary="List the workspaces this token sees")
    async def list_all(access: Scope) -> list[WorkspaceInfo]:
        async with database(res) as connection:
            return await list_workspaces(connection, access.workspace)

    @post("/workspaces", summary="Create a workspace (admin)", status_code=201)
    async def create(access: Scope, data: NewWorkspace) -> Response[WorkspaceInfo]:
        access.require_admin()
        async with database(res) as connection:
            workspace, created = await create_workspace(connection, data.name, data.description)
        return Response(workspace, status_code=201 if created else 200)

    @get("/workspaces/{workspace:str}", summary="Show a workspace")
    async def show(access: Scope, workspace: str) -> WorkspaceInfo:
        access.check(workspace)
        async with database(res) as connection:
            return await get_workspace(connection, workspace)

    return [list_all, create, show]
