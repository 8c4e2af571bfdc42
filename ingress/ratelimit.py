"""Per-key rate limits shared by every ingress process: GCRA in one PostgreSQL statement.

The bucket keeps a theoretical arrival time (TAT). A call is allowed when the TAT it would
push to is at most `burst` emission intervals ahead of now; each allowed call moves the
TAT one interval on. One upsert decides and counts atomically, whatever the process.
"""

from __future__ import annotations

import logging
import math

import asyncpg

from ingress.errors import RateLimited
from shared.db.pool import DB_ERRORS
from shared.spec.model import RateLimit

log = logging.getLogger(__name__)

_TAKE = """
insert into rate_limits as r (bucket, tat) values ($1, now() + make_interval(secs => $2))
on conflict (bucket) do update set tat = greatest(r.tat, now()) + make_interval(secs => $2)
    where greatest(r.tat, now()) + make_interval(secs => $2) - now() <= make_interval(secs => $3)
returning tat
"""
_WAIT = "select extract(epoch from (tat - now())) from rate_limits where bucket = $1"


class RateLimiter:
    """Checks and counts calls against a trigger's `rate_limit`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def take(self, bucket: str, limit: RateLimit) -> None:
        """Count one call; RateLimited with the seconds to wait when over the limit.

        If PostgreSQL is unreachable the call is let through (and logged): a rate limit
        protects targets from floods, it must not turn a database blip into an outage.
        """
        interval = float(limit.per) / limit.per_key
        burst = limit.burst or limit.per_key
        try:
            async with self._pool.acquire() as connection:
                if await connection.fetchval(_TAKE, bucket, interval, interval * burst) is not None:
                    return
                ahead = await connection.fetchval(_WAIT, bucket)
        except DB_ERRORS as exc:
            log.warning("rate limit not checked (%s)", type(exc).__name__)
            return
        wait = float(ahead or 0) - interval * (burst - 1)
        raise RateLimited(max(1, math.ceil(wait)))
