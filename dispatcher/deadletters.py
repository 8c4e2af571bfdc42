"""The dispatcher empties the dead-letter queue into PostgreSQL, where operators page and
filter it (shared/ops/deadletters.py). Every dispatcher may do it: a letter moved twice lands
on its own row.

It looks every second with `basic.get` rather than consuming: dead letters are rare, and a
look that finds the database down simply leaves them in the queue for the next one.
"""

from __future__ import annotations

import asyncio
import logging

import aiormq
import asyncpg
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from shared.broker.link import BrokerLink
from shared.db.pool import DB_ERRORS
from shared.errors import BrokerUnavailable
from shared.ops.deadletters import move_dead_letters
from shared.runtime.cancelling import stop_if_cancelled

log = logging.getLogger(__name__)

# Outages (and refusals) that only skip a look; the letters wait in the queue.
OUTAGES: tuple[type[BaseException], ...] = (
    *CONNECTION_EXCEPTIONS,
    *DB_ERRORS,
    asyncpg.PostgresError,
    aiormq.exceptions.AMQPError,
    BrokerUnavailable,
)


async def move_forever(broker: BrokerLink, pool: asyncpg.Pool, prefix: str, every: float = 1.0) -> None:
    """Move dead letters into the table every `every` seconds until cancelled."""
    failing = False
    while True:
        await broker.wait_ready()
        connection = broker.connection
        try:
            assert connection is not None
            async with pool.acquire() as database:
                moved = await move_dead_letters(connection, database, prefix)
            if moved:
                log.info("dead letters moved to the table", extra={"count": moved})
            failing = False
        except OUTAGES as exc:
            if not failing:
                log.warning("dead letters not moved (%s); trying again", type(exc).__name__)
            failing = True
        stop_if_cancelled()  # a stop's cancel that came as an outage, or was lost in one
        await asyncio.sleep(every)
