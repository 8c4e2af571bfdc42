"""Calls, failures and p95 duration per minute over the last hours (the console's charts).

One query over `executions`, grouped by the minute a call was received, bounded to
`MAX_HOURS` (at most 1440 rows whatever the traffic). A failure is a run that finished
failed or dead; the duration is a finished run's, from its start to its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.db.pool import Connection

MAX_HOURS = 24


@dataclass(frozen=True)
class Minute:
    """One minute of one trigger's (or a workspace's, or every) calls."""

    at: datetime  # the minute's start, UTC
    calls: int
    failures: int
    p95_ms: float | None  # None: no run received in this minute has finished


@dataclass(frozen=True)
class Trend:
    """Every minute from `since` to `until` (empty minutes included), oldest first."""

    since: datetime
    until: datetime
    minutes: list[Minute]


async def per_minute(
    connection: Connection, hours: int, workspace: str | None = None, trigger: str | None = None
) -> Trend:
    """The last `hours` (1 to MAX_HOURS) minute by minute, for a trigger, a workspace or all."""
    hours = max(1, min(hours, MAX_HOURS))
    rows = await connection.fetch(
        "select date_trunc('minute', received_at) as at, count(*) as calls,"
        " count(*) filter (where status in ('failed', 'dead')) as failures,"
        " percentile_cont(0.95) within group (order by extract(epoch from finished_at - started_at) * 1000)"
        "   filter (where finished_at is not null) as p95_ms,"
        " date_trunc('minute', now()) as now"
        " from executions"
        " where received_at >= date_trunc('minute', now()) - make_interval(hours => $1)"
        " and ($2::text is null or workspace = $2) and ($3::text is null or trigger = $3)"
        " group by 1 order by 1",
        hours,
        workspace,
        trigger,
    )
    until = rows[-1]["now"] if rows else await connection.fetchval("select date_trunc('minute', now())")
    return fill(
        until, hours, {r["at"]: Minute(r["at"], r["calls"], r["failures"], r["p95_ms"]) for r in rows}
    )


def fill(until: datetime, hours: int, found: dict[datetime, Minute]) -> Trend:
    """Every minute of the window, the ones without a call as zeros."""
    since = until - timedelta(hours=hours)
    count = hours * 60 + 1  # the current minute included
    minutes = []
    for n in range(count):
        at = since + timedelta(minutes=n)
        minutes.append(found.get(at) or Minute(at, 0, 0, None))
    return Trend(since, until, minutes)
