"""`/api/workspaces/{workspace}/triggers/{name}/sample/paths`: the sample's variables, each
with its type, its value and its `{{ }}` expression (shared/ops/sample_paths.py)."""

from __future__ import annotations

from litestar import Controller, get

from ingress.api.access import database, visible_workspace
from ingress.dependencies import PoolDep
from shared.db.triggers import latest_sample
from shared.ops.sample_paths import SamplePaths, sample_paths


class SamplePathsController(Controller):
    """The sample-paths handler, for a workspace the token sees."""

    path = "/workspaces/{workspace:str}/triggers/{name:str}/sample/paths"
    guards = [visible_workspace]

    @get(summary="Every path of the last accepted call, with its type, value and `{{ }}` expression")
    async def paths(self, pool: PoolDep, workspace: str, name: str) -> SamplePaths:
        async with database(pool) as connection:
            sample = await latest_sample(connection, workspace, name)
        return sample_paths(sample.execution_id, sample.request)
