"""The run log as a list: newest first, filtered, paged by cursor; and the recent failure rate.

Execution ids are UUIDv7, so ordering by id is ordering by arrival, and the last id of a
page is the cursor of the next: pages stay stable while new runs arrive at the top.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

from shared.db.executions import Status, duration_ms, utc
from shared.db.pool import Connection
from shared.errors import HooklineError

STATUSES: tuple[str, ...] = get_args(Status)


class BadFilter(HooklineError, ValueError):
    """Raised when a run-log filter or cursor cannot be used (the message says which)."""

    problem_type = "bad-filter"


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list: all fields optional, combined with `and`."""

    workspace: str | None = None
    trigger: str | None = None
    status: str | None = None
    since: datetime | None = None  # received at or after
    until: datetime | None = None  # received before
    before: str | None = None  # cursor: an execution id; only older runs


@dataclass(frozen=True)
class RunSummary:
    """One line of the run log."""

    id: str
    workspace: str
    trigger: str
    trigger_version: int
    status: str
    attempts: int
    received_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    error: str | None
    replay_of: str | None


@dataclass(frozen=True)
class RunPage:
    """A page of runs and the cursor of the next one (None: this was the last)."""

    items: list[RunSummary]
    next_cursor: str | None


def _cursor(text: str | None) -> uuid.UUID | None:
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise BadFilter(f"cursor {text!r} is not an execution id") from None


def _summary(row: Any) -> RunSummary:
    return RunSummary(
        id=str(row["id"]),
        workspace=row["workspace"],
        trigger=row["trigger"],
        trigger_version=row["trigger_version"],
        status=row["status"],
        attempts=row["attempts"],
        received_at=row["received_at"].astimezone(UTC),
        finished_at=utc(row["finished_at"]),
        duration_ms=duration_ms(row),
        error=row["error"],
        replay_of=str(row["replay_of"]) if row["replay_of"] else None,
    )


async def list_runs(connection: Connection, where: RunFilter, limit: int = 50) -> RunPage:
    """Runs matching `where`, newest first, at most `limit` of them."""
    if where.status is not None and where.status not in STATUSES:
        raise BadFilter(f"status {where.status!r} is not one of {', '.join(STATUSES)}")
    if where.trigger is not None and where.workspace is None:
        raise BadFilter("a trigger filter needs its workspace")
    rows = await connection.fetch(
        "select id, workspace, trigger, trigger_version, status, attempts, received_at, started_at,"
        " finished_at, error, replay_of from executions"
        " where ($1::text is null or workspace = $1) and ($2::text is null or trigger = $2)"
        " and ($3::text is null or status = $3) and ($4::timestamptz is null or received_at >= $4)"
        " and ($5::timestamptz is null or received_at < $5) and ($6::uuid is null or id < $6)"
        " order by id desc limit $7",
        where.workspace,
        where.trigger,
        where.status,
        where.since,
        where.until,
        _cursor(where.before),
        limit + 1,
    )
    items = [_summary(r) for r in rows[:limit]]
    return RunPage(items, items[-1].id if len(rows) > limit else None)


@dataclass(frozen=True)
class FailureRate:
    """Finished runs in the last `minutes` and how many of them failed (or died)."""

    minutes: int
    finished: int
    failed: int

    @property
    def rate(self) -> float | None:
        return self.failed / self.finished if self.finished else None


async def failure_rate(
    connection: Connection, minutes: int = 15, workspace: str | None = None
) -> FailureRate:
    """How many runs finished recently, and how many of those failed."""
    row = await connection.fetchrow(
        "select count(*) as finished, count(*) filter (where status in ('failed', 'dead')) as failed"
        " from executions where finished_at >= now() - make_interval(mins => $1)"
        " and status in ('succeeded', 'failed', 'dead') and ($2::text is null or workspace = $2)",
        minutes,
        workspace,
    )
    assert row is not None
    return FailureRate(minutes, row["finished"], row["failed"])
