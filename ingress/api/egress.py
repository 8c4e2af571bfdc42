"""`/api/workspaces/{workspace}/egress`: the networks a workspace's http steps may reach.

Only the admin sets a list (it opens internal addresses, the operator's decision); a
workspace token may read its own.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, put

from ingress.api.access import admin_only, database, visible_workspace
from ingress.dependencies import PoolDep
from shared.db.egress import set_workspace_allow, workspace_allow


class EgressAllow(msgspec.Struct, forbid_unknown_fields=True):
    """Networks opened to a workspace's http steps: `10.1.0.0/16`, `127.0.0.1:8099`, `[fd00::1]:443`."""

    allow: Annotated[list[Annotated[str, msgspec.Meta(max_length=100)]], msgspec.Meta(max_length=100)]


class EgressController(Controller):
    """The egress allow-list handlers."""

    path = "/workspaces/{workspace:str}/egress"

    @get(
        summary="The networks this workspace's http steps may reach beyond the public internet",
        guards=[visible_workspace],
    )
    async def show(self, pool: PoolDep, workspace: str) -> EgressAllow:
        async with database(pool) as connection:
            return EgressAllow([str(entry) for entry in await workspace_allow(connection, workspace)])

    @put(summary="Set the workspace's egress allow-list (admin)", guards=[admin_only])
    async def replace(self, pool: PoolDep, workspace: str, data: EgressAllow) -> EgressAllow:
        async with database(pool) as connection:
            return EgressAllow(await set_workspace_allow(connection, workspace, data.allow))
