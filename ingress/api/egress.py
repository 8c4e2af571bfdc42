"""`/api/workspaces/{workspace}/egress`: the networks a workspace's http steps may reach.

Only the admin sets a list (it opens internal addresses, the operator's decision); a
workspace token may read its own.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import get, put

from ingress.api.access import Scope, database
from ingress.api.resources import Resources
from shared.db.egress import set_workspace_allow, workspace_allow


class EgressAllow(msgspec.Struct, forbid_unknown_fields=True):
    """Networks opened to a workspace's http steps: `10.1.0.0/16`, `127.0.0.1:8099`, `[fd00::1]:443`."""

    allow: Annotated[list[Annotated[str, msgspec.Meta(max_length=100)]], msgspec.Meta(max_length=100)]


def routes(res: Resources) -> list[Any]:
    """The egress allow-list handlers."""
    path = "/workspaces/{workspace:str}/egress"

    @get(path, summary="The networks this workspace's http steps may reach beyond the public internet")
    async def show(access: Scope, workspace: str) -> EgressAllow:
        access.check(workspace)
        async with database(res) as connection:
            return EgressAllow([str(entry) for entry in await workspace_allow(connection, workspace)])

    @put(path, summary="Set the workspace's egress allow-list (admin)")
    async def replace(access: Scope, workspace: str, data: EgressAllow) -> EgressAllow:
        access.require_admin()
        async with database(res) as connection:
            return EgressAllow(await set_workspace_allow(connection, workspace, data.allow))

    return [show, replace]
