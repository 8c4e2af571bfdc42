"""Workspaces as operators list and create them (trigger files create them too)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from shared.db.pool import Connection
from shared.errors import NotFound, SpecError

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # as shared/spec/base.py `Name`


@dataclass(frozen=True)
class WorkspaceInfo:
    """A workspace and how many live triggers it has."""

    name: str
    description: str
    created_at: datetime
    triggers: int


_SELECT = (
    "select w.name, w.description, w.created_at,"
    " (select count(*) from triggers t where t.workspace = w.name and t.deleted_at is null) as triggers"
    " from workspaces w"
)


async def list_workspaces(connection: Connection, only: str | None = None) -> list[WorkspaceInfo]:
    """Every workspace (or just `only`), by name."""
    rows = await connection.fetch(_SELECT + " where $1::text is null or w.name = $1 order by w.name", only)
    return [WorkspaceInfo(r["name"], r["description"], r["created_at"], r["triggers"]) for r in rows]


async def get_workspace(connection: Connection, name: str) -> WorkspaceInfo:
    """One workspace; NotFound otherwise."""
    found = await list_workspaces(connection, name)
    if not found:
        raise NotFound(f"no workspace {name!r}")
    return found[0]


async def create_workspace(
    connection: Connection, name: str, description: str = ""
) -> tuple[WorkspaceInfo, bool]:
    """Create a workspace (or change its description); (workspace, created)."""
    if not NAME.match(name):
        raise SpecError(
            f"workspace name {name!r}: lower-case letters, digits, '-' and '_', at most 63 characters"
        )
    created = await connection.fetchval(
        "insert into workspaces (name, description) values ($1, $2)"
        " on conflict (name) do update set description = excluded.description returning (xmax = 0)",
        name,
        description,
    )
    return await get_workspace(connection, name), bool(created)
