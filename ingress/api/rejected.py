"""`/api/workspaces/{workspace}/triggers/{name}/rejected`: the trigger's refused calls, newest first."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from ingress.api.access import database, visible_workspace
from ingress.dependencies import PoolDep
from shared.db.rejected_calls import RejectedPage, list_rejected

Limit = Annotated[int, Parameter(ge=1, le=200, description="refused calls per page")]
Cursor = Annotated[int | None, Parameter(ge=1, description="`next_cursor` of the previous page")]


class RejectedController(Controller):
    """The refused-calls handler, for a workspace the token sees."""

    path = "/workspaces/{workspace:str}/triggers/{name:str}/rejected"
    guards = [visible_workspace]

    @get(summary="Refused calls: time, status, reason and what the sender can fix (never a secret)")
    async def rejected(
        self, pool: PoolDep, workspace: str, name: str, limit: Limit = 50, cursor: Cursor = None
    ) -> RejectedPage:
        async with database(pool) as connection:
            return await list_rejected(connection, workspace, name, limit, cursor)
