"""Queue depths and stored dead letters as Prometheus gauges, sampled by the dispatcher
(passive declares, no plugin; one grouped count of the dead_letters table)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from prometheus_client import Gauge

from shared.db.deadletters import letter_counts
from shared.db.pool import DB_ERRORS
from shared.errors import BrokerUnavailable
from shared.ops.queues import queue_depths
from shared.runtime.cancelling import stop_if_cancelled

log = logging.getLogger(__name__)

# Outages that only skip a sample.
OUTAGES: tuple[type[BaseException], ...] = (*CONNECTION_EXCEPTIONS, *DB_ERRORS, BrokerUnavailable)
LABELS = ["queue", "kind", "workspace", "trigger"]
MESSAGES = Gauge("hookline_queue_messages", "Messages ready in a queue (not those being run)", LABELS)
CONSUMERS = Gauge(
    "hookline_queue_consumers", "Consumers of a queue (a single-active lane counts one)", LABELS
)
# The dead-letter queue is emptied into PostgreSQL within a second; this is what waits there.
DEAD_LETTERS = Gauge(
    "hookline_dead_letters", "Dead letters waiting for an operator", ["workspace", "trigger"]
)


async def sample(broker: AbstractConnection, pool: asyncpg.Pool, prefix: str) -> None:
    """Set the gauges from one look at every queue (queues gone since are dropped)."""
    async with pool.acquire() as connection:
        depths = await queue_depths(broker, connection, prefix)
        dead = await letter_counts(connection)
    DEAD_LETTERS.clear()
    for (workspace, trigger), count in dead.items():
        DEAD_LETTERS.labels(workspace, trigger).set(count)
    MESSAGES.clear()
    CONSUMERS.clear()
    for q in depths:
        labels = (q.name, q.kind, q.workspace or "", q.trigger or "")
        MESSAGES.labels(*labels).set(q.messages)
        CONSUMERS.labels(*labels).set(q.consumers)


async def sample_forever(
    broker: AbstractConnection, pool: asyncpg.Pool, prefix: str, every: float = 10.0
) -> None:
    """Sample every `every` seconds until cancelled; an outage only skips samples."""
    while True:
        try:
            await sample(broker, pool, prefix)
        except OUTAGES as exc:
            log.info("queue depths not sampled (%s)", type(exc).__name__)
        stop_if_cancelled()  # a stop's cancel that came as an outage, or was lost in one
        await asyncio.sleep(every)
