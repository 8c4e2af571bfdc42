"""Where a worker keeps and finds step checkpoints (shared/db/checkpoints.py), outages waited out."""

from __future__ import annotations

import logging

import asyncpg

from shared.db.checkpoints import Checkpoint, checkpoint_text, load_checkpoints, save_checkpoint
from shared.db.retry import retry_db

log = logging.getLogger(__name__)


class CheckpointStore:
    """The `Checkpoints` of worker/engine.py on hookline's own database; a checkpoint over
    `limit` bytes of JSON is not kept (a tenant's target could answer 10 MiB per call)."""

    def __init__(self, pool: asyncpg.Pool, limit: int = 1_048_576) -> None:
        self._pool = pool
        self._limit = limit

    async def load(self, execution_id: str) -> dict[str, Checkpoint]:
        async def read() -> dict[str, Checkpoint]:
            async with self._pool.acquire() as connection:
                return await load_checkpoints(connection, execution_id)

        return await retry_db(read, lambda _: log.warning("cannot read checkpoints; retrying"))

    async def save(self, execution_id: str, step_id: str, checkpoint: Checkpoint) -> bool:
        text = checkpoint_text(checkpoint)
        if len(text[0]) + len(text[1]) > self._limit:
            log.warning("step %s: output too large to checkpoint; a retry runs it again", step_id)
            return False

        async def write() -> None:
            async with self._pool.acquire() as connection:
                await save_checkpoint(connection, execution_id, step_id, text)

        await retry_db(write, lambda _: log.warning("cannot keep a checkpoint; retrying"))
        return True
