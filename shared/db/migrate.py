"""Numbered .sql files in migrations/, applied once each, in order, under an advisory lock."""

from __future__ import annotations

import re
from importlib import resources

from shared.db import locks
from shared.db.pool import Connection

_LOCK = locks.MIGRATE
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of every migration, in order."""
    folder = resources.files("shared.db") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(connection: Connection) -> list[str]:
    """Apply what is missing; return the names applied."""
    applied: list[str] = []
    await connection.execute("select pg_advisory_lock($1)", _LOCK)
    try:
        await connection.execute(
            "create table if not exists schema_migrations ("
            " version int primary key, name text not null,"
            " applied_at timestamptz not null default now())"
        )
        done = {r["version"] for r in await connection.fetch("select version from schema_migrations")}
        for number, name, sql in migrations():
            if number in done:
                continue
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute(
                    "insert into schema_migrations (version, name) values ($1, $2)", number, name
                )
            applied.append(name)
    finally:
        await connection.execute("select pg_advisory_unlock($1)", _LOCK)
    return applied
