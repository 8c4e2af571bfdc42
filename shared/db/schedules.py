"""The `schedules` table: each scheduled trigger's next tick, kept by the leading dispatcher.

`sync_schedules` follows the registry (a new schedule starts at its first tick after now, a
changed one starts over from now, a deleted trigger's row goes); `claim_due` locks the row
most overdue so the leader can publish its ticks and `advance` it in the same transaction.
Every statement has a deadline: the leader must notice a database that stopped answering.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from shared.db.pool import Connection, pg_text
from shared.db.registry import spec_from_json
from shared.spec.model import Trigger
from shared.spec.schedule import Schedule, next_tick
from shared.spec.types import dec_hook

log = logging.getLogger(__name__)

STATEMENT_SECONDS = 10.0


def schedule_from_json(value: Any) -> Schedule:
    """A stored `schedule` back into its Struct (ValueError if it no longer decodes)."""
    try:
        return msgspec.convert(value, Schedule, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None


async def sync_schedules(connection: Connection, now: datetime) -> int:
    """Bring the table in line with the live triggers' schedules; the number of rows changed."""
    wanted = {
        (r["workspace"], r["name"]): r["schedule"]
        for r in await connection.fetch(
            "select workspace, name, spec->'schedule' as schedule from triggers"
            " where deleted_at is null and jsonb_typeof(spec->'schedule') = 'object'",
            timeout=STATEMENT_SECONDS,
        )
    }
    have = {
        (r["workspace"], r["trigger"]): r["schedule"]
        for r in await connection.fetch(
            "select workspace, trigger, schedule from schedules", timeout=STATEMENT_SECONDS
        )
    }
    gone = [key for key in have if key not in wanted]
    changed = 0
    if gone:
        await connection.execute(
            "delete from schedules s using unnest($1::text[], $2::text[]) as g(workspace, trigger)"
            " where s.workspace = g.workspace and s.trigger = g.trigger",
            [w for w, _ in gone],
            [t for _, t in gone],
            timeout=STATEMENT_SECONDS,
        )
        changed += len(gone)
    for (workspace, trigger), value in wanted.items():
        if have.get((workspace, trigger)) == value:
            continue
        try:
            schedule = schedule_from_json(value)
        except ValueError:
            log.exception("schedule of %s/%s cannot be decoded", workspace, trigger)
            continue
        # Starts over from now: no tick before the schedule existed (or changed) is caught up.
        await connection.execute(
            "insert into schedules (workspace, trigger, schedule, next_at) values ($1, $2, $3, $4)"
            " on conflict (workspace, trigger) do update set schedule = excluded.schedule,"
            " next_at = excluded.next_at, retry_at = null, last_error = null",
            workspace,
            trigger,
            value,
            next_tick(schedule, now),
            timeout=STATEMENT_SECONDS,
        )
        changed += 1
    return changed


@dataclass(frozen=True)
class DueSchedule:
    """A locked row that is due, with its trigger's current version."""

    workspace: str
    trigger: str
    schedule: Any  # as stored; `schedule_from_json`
    next_at: datetime
    version: int
    spec: Any  # the trigger as stored; `spec_from_json`


# Rows the leader may publish for: live triggers, not paused. Paused triggers are left
# due: once resumed, their missed ticks follow `catch_up`.
_PUBLISHABLE = """
from schedules s
join triggers t on t.workspace = s.workspace and t.name = s.trigger and t.deleted_at is null
where not exists (select 1 from trigger_pauses p where p.workspace = s.workspace
                  and p.trigger = s.trigger and p.resumed_at is null)
"""
_DUE = f"""
select s.workspace, s.trigger, s.schedule, s.next_at, t.version, t.spec
{_PUBLISHABLE}
  and s.next_at <= $1 and (s.retry_at is null or s.retry_at <= $1)
order by s.next_at
limit 1
for update of s skip locked
"""
_NEXT_DUE = f"select min(greatest(s.next_at, s.retry_at)) {_PUBLISHABLE}"


async def claim_due(connection: Connection, now: datetime) -> DueSchedule | None:
    """Lock the most overdue row (inside the caller's transaction); None when none is due."""
    row = await connection.fetchrow(_DUE, now, timeout=STATEMENT_SECONDS)
    if row is None:
        return None
    return DueSchedule(
        row["workspace"], row["trigger"], row["schedule"], row["next_at"], row["version"], row["spec"]
    )


async def advance(
    connection: Connection,
    due: DueSchedule,
    next_at: datetime | None,
    last_tick: datetime | None,
    *,
    retry_at: datetime | None = None,
    error: str | None = None,
) -> None:
    """Record what was published: the next tick to do, the last one published (if any)."""
    await connection.execute(
        "update schedules set next_at = $3, last_tick = coalesce($4, last_tick),"
        " published_at = case when $4::timestamptz is null then published_at else now() end,"
        " retry_at = $5, last_error = $6 where workspace = $1 and trigger = $2",
        due.workspace,
        due.trigger,
        next_at,
        last_tick,
        retry_at,
        pg_text(error),
        timeout=STATEMENT_SECONDS,
    )


async def next_due_at(connection: Connection) -> datetime | None:
    """When the earliest publishable row falls due (one whose publish failed: its retry time)."""
    value: datetime | None = await connection.fetchval(_NEXT_DUE, timeout=STATEMENT_SECONDS)
    return value


@dataclass(frozen=True)
class ScheduleState:
    """A trigger's schedule as operators see it."""

    next_at: datetime | None
    last_tick: datetime | None
    last_error: str | None


async def schedule_state(connection: Connection, workspace: str, trigger: str) -> ScheduleState | None:
    """The next and last tick of a trigger (None: no schedule, or not picked up yet)."""
    row = await connection.fetchrow(
        "select next_at, last_tick, last_error from schedules where workspace = $1 and trigger = $2",
        workspace,
        trigger,
    )
    return None if row is None else ScheduleState(row["next_at"], row["last_tick"], row["last_error"])


def trigger_of(due: DueSchedule) -> Trigger:
    """The due row's trigger, current version (ValueError if it no longer decodes)."""
    try:
        return spec_from_json(due.spec)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
