"""The retention leader: every `retention_every` seconds one dispatcher (whichever holds the
RETENTION advisory lock) deletes what is past its age (shared/db/retention.py)."""

from __future__ import annotations

import asyncio
import datetime
import logging

import asyncpg
from prometheus_client import Counter, Gauge

from shared.db.pool import DB_ERRORS
from shared.db.retention import FAMILIES, Sweep, sweep_as_leader
from shared.runtime.cancelling import stop_if_cancelled
from shared.settings import Settings

log = logging.getLogger(__name__)

# Outages and refusals that only skip a sweep (a lock timeout, a cancelled statement).
FAILURES: tuple[type[BaseException], ...] = (*DB_ERRORS, asyncpg.PostgresError)

DELETED = Counter("hookline_retention_deleted_total", "Rows deleted by retention, by family", ["family"])
LAST_SWEEP = Gauge("hookline_retention_last_sweep_timestamp_seconds", "When this process last swept")


async def sweep_once(pool: asyncpg.Pool, settings: Settings) -> Sweep | None:
    """One sweep if this process is the leader now; None if another one is sweeping."""
    async with pool.acquire() as connection:
        result = await sweep_as_leader(
            connection,
            datetime.timedelta(days=settings.retention_days),
            settings.retention_batch,
            datetime.timedelta(days=settings.retention_max_days),
        )
    if result is None:
        return None
    for family in FAMILIES:
        DELETED.labels(family).inc(result.deleted[family])
    LAST_SWEEP.set_to_current_time()
    if result.total:
        log.info("retention swept", extra={"deleted": result.deleted, "batches": result.batches})
    return result


async def sweep_forever(pool: asyncpg.Pool, settings: Settings) -> None:
    """Sweep every `retention_every` seconds until cancelled; an outage only skips a sweep."""
    while True:
        try:
            await sweep_once(pool, settings)
        except FAILURES as exc:
            log.warning("retention sweep failed (%s); trying again later", type(exc).__name__)
        stop_if_cancelled()  # a stop's cancel that came as an outage, or was lost in one
        await asyncio.sleep(settings.retention_every)
