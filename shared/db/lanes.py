"""Ordered lanes in PostgreSQL: what each trigger asks for, the layouts on the broker, holds.

The dispatcher writes layouts, workers read them (LISTEN `hookline_lanes`); a worker that
stops a lane writes a hold, an operator's `hookline lanes resume` answers it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shared.db.pool import Connection
from shared.wire.topology import LaneLayout

LANES_CHANNEL = "hookline_lanes"
Resume = Literal["retry", "skip"]


@dataclass(frozen=True)
class TriggerShape:
    """How a trigger wants its calls routed: unordered (`partitions is None`) or a layout."""

    workspace: str
    name: str
    deleted: bool
    partitions: int | None  # None: unordered; 0: one lane; N: N partitions
    key: str | None = None
    max_queued: int | None = None  # an unordered trigger's own bound (None: the deployment's)

    @property
    def unordered(self) -> bool:
        """Whether its calls go to its own trigger queue (a live, unordered trigger)."""
        return self.partitions is None and not self.deleted


def shape_from_spec(
    workspace: str, name: str, deleted: bool, ordered: Any, max_queued: Any = None
) -> TriggerShape:
    """`ordered` as stored (false, true or {key, partitions}) -> TriggerShape."""
    if isinstance(ordered, dict):
        return TriggerShape(workspace, name, deleted, int(ordered.get("partitions", 4)), str(ordered["key"]))
    bound = int(max_queued) if isinstance(max_queued, int) else None
    return TriggerShape(workspace, name, deleted, 0 if ordered is True else None, max_queued=bound)


async def trigger_shapes(connection: Connection) -> list[TriggerShape]:
    """Every trigger ever applied (deleted ones too: their keys must be unbound)."""
    rows = await connection.fetch(
        "select workspace, name, deleted_at is not null as deleted, spec->'ordered' as ordered,"
        " spec->'max_queued' as max_queued from triggers"
    )
    return [
        shape_from_spec(r["workspace"], r["name"], r["deleted"], r["ordered"], r["max_queued"]) for r in rows
    ]


async def load_layouts(connection: Connection) -> list[LaneLayout]:
    """Every layout, oldest generation first within a trigger."""
    rows = await connection.fetch(
        "select workspace, trigger, generation, partitions, key, draining from lane_layouts"
        " order by workspace, trigger, generation"
    )
    return [
        LaneLayout(r["workspace"], r["trigger"], r["generation"], r["partitions"], r["key"], r["draining"])
        for r in rows
    ]


async def save_layouts(connection: Connection, drain: list[LaneLayout], create: list[LaneLayout]) -> None:
    """Mark layouts draining and add new ones, in one transaction."""
    async with connection.transaction():
        await connection.executemany(
            "update lane_layouts set draining = true where workspace = $1 and trigger = $2 and generation = $3",
            [(x.workspace, x.trigger, x.generation) for x in drain],
        )
        await connection.executemany(
            "insert into lane_layouts (workspace, trigger, generation, partitions, key)"
            " values ($1, $2, $3, $4, $5)",
            [(x.workspace, x.trigger, x.generation, x.partitions, x.key) for x in create],
        )


async def delete_layout(connection: Connection, layout: LaneLayout) -> None:
    """Forget a drained layout (its queues are gone from the broker)."""
    await connection.execute(
        "delete from lane_layouts where workspace = $1 and trigger = $2 and generation = $3",
        layout.workspace,
        layout.trigger,
        layout.generation,
    )


@dataclass(frozen=True)
class Hold:
    """A stopped lane: the message it holds and what the operator asked for."""

    queue: str
    workspace: str
    trigger: str
    execution_id: str
    error: str | None
    held_at: datetime
    resume: Resume | None


async def hold_lane(
    connection: Connection, queue: str, workspace: str, trigger: str, execution_id: str, error: str | None
) -> None:
    """Record that `queue` is stopped on `execution_id`, waiting for a new answer."""
    await connection.execute(
        "insert into lane_holds (queue, workspace, trigger, execution_id, error) values ($1, $2, $3, $4, $5)"
        " on conflict (queue) do update set execution_id = excluded.execution_id, error = excluded.error,"
        " held_at = now(), resume = null, resumed_at = null",
        queue,
        workspace,
        trigger,
        uuid.UUID(execution_id),
        error,
    )


async def get_hold(connection: Connection, queue: str) -> Hold | None:
    """The hold on `queue`, if it is stopped."""
    row = await connection.fetchrow("select * from lane_holds where queue = $1", queue)
    return _hold(row) if row is not None else None


async def list_holds(
    connection: Connection, workspace: str | None = None, trigger: str | None = None
) -> list[Hold]:
    """Stopped lanes, optionally of one trigger."""
    rows = await connection.fetch(
        "select * from lane_holds where ($1::text is null or workspace = $1)"
        " and ($2::text is null or trigger = $2) order by held_at",
        workspace,
        trigger,
    )
    return [_hold(r) for r in rows]


async def request_resume(connection: Connection, workspace: str, trigger: str, resume: Resume) -> list[Hold]:
    """Ask the workers holding this trigger's stopped lanes to go on; the holds asked."""
    rows = await connection.fetch(
        "update lane_holds set resume = $3, resumed_at = now() where workspace = $1 and trigger = $2"
        " returning *",
        workspace,
        trigger,
        resume,
    )
    return [_hold(r) for r in rows]


async def release_hold(connection: Connection, queue: str) -> None:
    """The lane moves again."""
    await connection.execute("delete from lane_holds where queue = $1", queue)


def _hold(row: Any) -> Hold:
    return Hold(
        queue=row["queue"],
        workspace=row["workspace"],
        trigger=row["trigger"],
        execution_id=str(row["execution_id"]),
        error=row["error"],
        held_at=row["held_at"],
        resume=row["resume"],
    )


async def mark_dead(connection: Connection, execution_id: str) -> None:
    """An execution whose message an operator dead-lettered from a stopped lane."""
    await connection.execute("update executions set status = 'dead' where id = $1", uuid.UUID(execution_id))
