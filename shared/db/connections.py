"""Workspace connections in PostgreSQL: applied from trigger files, read by workers."""

from __future__ import annotations

from typing import Any

import msgspec

from shared.db.pool import Connection as DbConnection
from shared.spec.connection_uses import check_connection_uses
from shared.spec.connections import Connection
from shared.spec.model import Trigger
from shared.spec.types import dec_hook, enc_hook

_encode = msgspec.json.Encoder(enc_hook=enc_hook).encode


def _to_json(connection: Connection) -> Any:
    return msgspec.json.decode(_encode(connection))


async def apply_connections(
    db: DbConnection, workspace: str, connections: dict[str, Connection], triggers: list[Trigger]
) -> list[tuple[str, str]]:
    """Create or update each declared connection; [(name, created|updated|unchanged)].

    Connections missing from a document are kept: several files may share a workspace,
    each declaring the connections its triggers use. So the document's `triggers` are
    checked here against the stored connections and the document's, and a changed type
    against the live triggers stored (SpecError). Call it in the apply's transaction, once
    the workspace's row is written: that row's lock keeps two applies of one workspace from
    checking against each other's old state.
    """
    stored = {
        r["name"]: msgspec.convert(r["spec"], Connection, dec_hook=dec_hook)
        for r in await db.fetch("select name, spec from connections where workspace = $1", workspace)
    }
    check_connection_uses(workspace, connections, triggers, stored, await _live_triggers(db, workspace))
    changes = []
    for name, connection in connections.items():
        spec = _to_json(connection)
        stored = await db.fetchval(
            "select spec from connections where workspace = $1 and name = $2 for update", workspace, name
        )
        if stored == spec:
            changes.append((name, "unchanged"))
            continue
        await db.execute(
            "insert into connections (workspace, name, spec) values ($1, $2, $3)"
            " on conflict (workspace, name) do update set spec = excluded.spec, updated_at = now()",
            workspace,
            name,
            spec,
        )
        changes.append((name, "created" if stored is None else "updated"))
    return changes


async def _live_triggers(db: DbConnection, workspace: str) -> list[Trigger]:
    rows = await db.fetch("select spec from triggers where workspace = $1 and deleted_at is null", workspace)
    triggers = []
    for row in rows:
        try:
            triggers.append(msgspec.convert(row["spec"], Trigger, dec_hook=dec_hook))
        except (msgspec.ValidationError, ValueError):
            continue  # no longer decodes: the registry skips it (and says so), it uses nothing
    return triggers


async def load_connections(db: DbConnection) -> dict[tuple[str, str], Connection]:
    """Every connection by (workspace, name), as written (secrets still references)."""
    rows = await db.fetch("select workspace, name, spec from connections")
    return {
        (r["workspace"], r["name"]): msgspec.convert(r["spec"], Connection, dec_hook=dec_hook) for r in rows
    }
