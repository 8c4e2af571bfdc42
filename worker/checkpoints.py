"""Where a worker keeps and finds step checkpoints (shared/db/checkpoints.py), outages waited out."""

from __future__ import annotations

import logging

import asyncpg

from shared.db.checkpoints import Checkpoint, load_checkpoints, save_checkpoint
from shared.db.retry import retry_db

log = logging.getLogger(__name__)


class CheckpointStore:
    """The `Checkpoints` of worker/engine.py on hookline's own database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def load(self, execution_id: str) -> dict[str, Checkpoint]:
        async def read() -> dict[str, Checkpoint]:
            async with self._pool.acquire() as connection:
                return await load_checkpoints(connection, execution_id)

        return await retry_db(read, lambda _: log.warning("cannot read checkpoints; retrying"))

    async def save(self, execution_id: str, step_id: str, checkpoint: Checkpoint) -> None:
        async def write() -> None:
            async with self._pool.acquire() as connection:
                await save_checkpoint(connection, execution_id, step_id, checkpoint)

        await retry_db(write, lambda _: log.warning("cannot keep a checkpoint; retrying"))
