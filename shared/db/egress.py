"""Per-workspace egress allow-lists in PostgreSQL: set by the admin, read by workers and at apply."""

from __future__ import annotations

from shared.db.pool import Connection
from shared.errors import NotFound, SpecError
from shared.spec.egress import AllowEntry, allow_entry


async def workspace_allow(connection: Connection, workspace: str) -> tuple[AllowEntry, ...]:
    """The networks `workspace` may reach beyond the public internet (none unless the admin set some)."""
    entries = await connection.fetchval("select allow from workspace_egress where workspace = $1", workspace)
    return _parsed(entries or [])


async def every_workspace_allow(connection: Connection) -> dict[str, tuple[AllowEntry, ...]]:
    """Every workspace's list, by workspace (workspaces without one left out)."""
    rows = await connection.fetch("select workspace, allow from workspace_egress")
    return {r["workspace"]: _parsed(r["allow"]) for r in rows if r["allow"]}


async def set_workspace_allow(connection: Connection, workspace: str, entries: list[str]) -> list[str]:
    """Replace `workspace`'s list (an empty list removes it); the entries as stored.

    Only the admin may call this: the list is the operator's decision, never a tenant's.
    """
    try:
        parsed = [str(allow_entry(entry)) for entry in entries]
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    async with connection.transaction():
        if not await connection.fetchval("select 1 from workspaces where name = $1", workspace):
            raise NotFound(f"no workspace {workspace!r}")
        if parsed:
            await connection.execute(
                "insert into workspace_egress (workspace, allow) values ($1, $2) on conflict (workspace)"
                " do update set allow = excluded.allow, updated_at = now()",
                workspace,
                parsed,
            )
        else:
            await connection.execute("delete from workspace_egress where workspace = $1", workspace)
    return parsed


def _parsed(entries: list[str]) -> tuple[AllowEntry, ...]:
    return tuple(allow_entry(entry) for entry in entries)
