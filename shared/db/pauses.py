"""Paused triggers: a row per pause, answered by the dispatcher, the workers and the ingress.

Pausing writes a row; the table's trigger notifies every service. The ingress refuses a
paused request-response trigger's calls (503) and accepts async ones; the dispatcher binds
a paused unordered trigger's key to its hold queue; workers let go of a paused ordered
trigger's lanes (the calls wait there, in order). Resuming sets `resumed_at`: workers take
the lanes back, the dispatcher binds the key back to the work queue, moves what the hold
queue kept, deletes it, and then the row.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.db.pool import Connection
from shared.errors import NotFound


@dataclass(frozen=True)
class PauseState:
    """One row of `trigger_pauses`."""

    workspace: str
    trigger: str
    resumed: bool


async def _live(connection: Connection, workspace: str, name: str) -> None:
    found = await connection.fetchval(
        "select 1 from triggers where workspace = $1 and name = $2 and deleted_at is null", workspace, name
    )
    if found is None:
        raise NotFound(f"no trigger {workspace}/{name}")


async def pause_trigger(connection: Connection, workspace: str, name: str) -> None:
    """Pause (again): a resume still being carried out is overtaken."""
    await _live(connection, workspace, name)
    await connection.execute(
        "insert into trigger_pauses (workspace, trigger) values ($1, $2)"
        " on conflict (workspace, trigger) do update set paused_at = now(), resumed_at = null",
        workspace,
        name,
    )


async def resume_trigger(connection: Connection, workspace: str, name: str) -> bool:
    """Resume; False when the trigger was not paused (nothing to do)."""
    await _live(connection, workspace, name)
    result = await connection.execute(
        "update trigger_pauses set resumed_at = now() where workspace = $1 and trigger = $2"
        " and resumed_at is null",
        workspace,
        name,
    )
    return not result.endswith(" 0")


async def pause_states(connection: Connection) -> list[PauseState]:
    """Every paused trigger, and every resumed one whose hold queue is not cleaned up yet."""
    rows = await connection.fetch(
        "select workspace, trigger, resumed_at is not null as resumed from trigger_pauses"
    )
    return [PauseState(r["workspace"], r["trigger"], r["resumed"]) for r in rows]


async def paused_triggers(connection: Connection) -> set[tuple[str, str]]:
    """(workspace, trigger) of every trigger paused right now."""
    rows = await connection.fetch("select workspace, trigger from trigger_pauses where resumed_at is null")
    return {(r["workspace"], r["trigger"]) for r in rows}


async def forget_resumed(connection: Connection, workspace: str, name: str) -> None:
    """The resume is carried out (hold queue emptied and deleted): drop the row."""
    await connection.execute(
        "delete from trigger_pauses where workspace = $1 and trigger = $2 and resumed_at is not null",
        workspace,
        name,
    )
