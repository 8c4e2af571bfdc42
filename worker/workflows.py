"""Compiled workflows by trigger version; versions never change, so they are cached for good."""

from __future__ import annotations

import logging

import asyncpg

from shared.db.registry import OPERATOR, trigger_version
from shared.db.retry import retry_db
from shared.spec.model import Trigger
from worker.engine import DEFAULT_OUTPUT_LIMIT, Checkpoints, Workflow
from worker.steps.base import Resources

log = logging.getLogger(__name__)


class WorkflowCache:
    """Fetches a trigger version once and keeps its compiled workflow."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        resources: Resources | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        self._pool = pool
        self._checkpoints = checkpoints
        self._resources = resources
        self._output_limit = output_limit
        self._cache: dict[tuple[str, str, int], Workflow] = {}

    async def get(self, workspace: str, trigger: str, version: int) -> Workflow:
        key = (workspace, trigger, version)
        workflow = self._cache.get(key)
        if workflow is not None:
            return workflow
        # While PostgreSQL is away the delivery waits here, unacknowledged.

        async def load() -> tuple[Trigger, str]:
            async with self._pool.acquire() as connection:
                return await trigger_version(connection, workspace, trigger, version)

        spec, written_by = await retry_db(
            load, lambda _: log.warning("cannot load trigger %s/%s; retrying", workspace, trigger)
        )
        workflow = self._cache[key] = Workflow(
            spec,
            self._resources,
            self._output_limit,
            operator_written=written_by == OPERATOR,
            checkpoints=self._checkpoints,
        )
        return workflow
