"""API keys: created (or pasted) once, stored as SHA-256 digests, attached to triggers.

A digest is unique within its workspace only: pasting a key another workspace uses is
accepted like any other, so the answer says nothing about other tenants' keys.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.db.pool import Connection
from shared.db.registry import spec_from_json
from shared.errors import HooklineError, NotFound
from shared.ids import MIN_PASTED_KEY_LENGTH, key_digest, key_display_prefix, new_api_key
from shared.spec.model import ApiKeyAuth


class KeyRejected(HooklineError, ValueError):
    """Raised when a pasted key is too short or already in use, or a trigger takes no keys."""

    problem_type = "key-rejected"


@dataclass(frozen=True)
class CreatedKey:
    """A key as created: the plain key is here once and nowhere else."""

    id: uuid.UUID
    key: str
    prefix: str
    label: str


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: label and prefix, never the key."""

    id: uuid.UUID
    workspace: str
    label: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    triggers: list[str]


async def _keyed_trigger_ids(connection: Connection, workspace: str, triggers: list[str]) -> list[int]:
    ids = []
    for name in triggers:
        row = await connection.fetchrow(
            "select id, spec from triggers where workspace = $1 and name = $2 and deleted_at is null",
            workspace,
            name,
        )
        if row is None:
            raise NotFound(f"trigger {workspace}/{name} does not exist")
        if not isinstance(spec_from_json(row["spec"]).auth, ApiKeyAuth):
            raise KeyRejected(
                f"trigger {workspace}/{name} does not use API keys (its auth type is not api_key)"
            )
        ids.append(row["id"])
    return ids


async def create_key(
    connection: Connection, workspace: str, triggers: list[str], label: str, key: str | None = None
) -> CreatedKey:
    """Store a new (or pasted) key's digest and attach it to triggers of the workspace."""
    if key is None:
        key = new_api_key()
    elif len(key) < MIN_PASTED_KEY_LENGTH:
        raise KeyRejected(f"a pasted key must have at least {MIN_PASTED_KEY_LENGTH} characters")
    async with connection.transaction():
        trigger_ids = await _keyed_trigger_ids(connection, workspace, triggers)
        key_id = uuid.uuid4()
        try:
            await connection.execute(
                "insert into api_keys (id, workspace, label, prefix, digest) values ($1, $2, $3, $4, $5)",
                key_id,
                workspace,
                label,
                key_display_prefix(key),
                key_digest(key),
            )
        except asyncpg.exceptions.UniqueViolationError:
            # Unique per workspace (migration 013): only a key of this workspace is told apart,
            # never one another tenant uses.
            raise KeyRejected("this key is already in use in this workspace; generate a new one") from None
        await connection.executemany(
            "insert into api_key_triggers (key_id, trigger_id) values ($1, $2)",
            [(key_id, t) for t in trigger_ids],
        )
    return CreatedKey(key_id, key, key_display_prefix(key), label)


async def _key_id(connection: Connection, workspace: str, key: str) -> uuid.UUID:
    """A key named by its id, or by the plain key (a consumer pasting theirs)."""
    try:
        key_id = uuid.UUID(key)
    except ValueError:
        found = await connection.fetchval(
            "select id from api_keys where digest = $1 and workspace = $2 and revoked_at is null",
            key_digest(key),
            workspace,
        )
        if found is None:
            # Never repeat the value: it may be a secret.
            raise NotFound(f"no live key with that value in workspace {workspace}") from None
        return found  # type: ignore[no-any-return]
    found = await connection.fetchval(
        "select id from api_keys where id = $1 and workspace = $2 and revoked_at is null",
        key_id,
        workspace,
    )
    if found is None:
        raise NotFound(f"no live key {key_id} in workspace {workspace}")
    return found  # type: ignore[no-any-return]


async def attach_key(connection: Connection, workspace: str, key: str, triggers: list[str]) -> uuid.UUID:
    """Let an existing key open more triggers of its workspace (one consumer, one key)."""
    async with connection.transaction():
        key_id = await _key_id(connection, workspace, key)
        for trigger_id in await _keyed_trigger_ids(connection, workspace, triggers):
            await connection.execute(
                "insert into api_key_triggers (key_id, trigger_id) values ($1, $2) on conflict do nothing",
                key_id,
                trigger_id,
            )
    return key_id


async def detach_key(connection: Connection, workspace: str, key: str, triggers: list[str]) -> uuid.UUID:
    """Stop a key opening some triggers (it stays valid for the others)."""
    async with connection.transaction():
        key_id = await _key_id(connection, workspace, key)
        for trigger_id in await _keyed_trigger_ids(connection, workspace, triggers):
            await connection.execute(
                "delete from api_key_triggers where key_id = $1 and trigger_id = $2", key_id, trigger_id
            )
    return key_id


async def relabel_key(connection: Connection, workspace: str, key: str, label: str) -> uuid.UUID:
    """Change a key's label; the key's id (it may have been named by its value)."""
    key_id = await _key_id(connection, workspace, key)
    await connection.execute("update api_keys set label = $2 where id = $1", key_id, label)
    return key_id


async def revoke_key(connection: Connection, workspace: str, key: str) -> None:
    """Revoke a key: every ingress refuses it as soon as the registry notification arrives."""
    key_id = await _key_id(connection, workspace, key)
    await connection.execute("update api_keys set revoked_at = now() where id = $1", key_id)


async def revoke_keys_labelled(connection: Connection, workspace: str, label: str) -> int:
    """Revoke every live key of a workspace with this label; return how many."""
    result = await connection.execute(
        "update api_keys set revoked_at = now() where workspace = $1 and label = $2 and revoked_at is null",
        workspace,
        label,
    )
    return int(result.split()[-1])


async def list_keys(
    connection: Connection, workspace: str, trigger: str | None = None, include_revoked: bool = False
) -> list[KeyInfo]:
    """Keys of a workspace (or of one trigger), with the triggers each opens."""
    rows = await connection.fetch(
        "select k.id, k.workspace, k.label, k.prefix, k.created_at, k.revoked_at,"
        " coalesce(array_agg(t.name order by t.name) filter (where t.name is not null), '{}') as triggers"
        " from api_keys k"
        " left join api_key_triggers kt on kt.key_id = k.id"
        " left join triggers t on t.id = kt.trigger_id and t.deleted_at is null"
        " where k.workspace = $1 and ($2 or k.revoked_at is null)"
        " group by k.id order by k.created_at",
        workspace,
        include_revoked,
    )
    keys = [
        KeyInfo(
            r["id"],
            r["workspace"],
            r["label"],
            r["prefix"],
            r["created_at"],
            r["revoked_at"],
            list(r["triggers"]),
        )
        for r in rows
    ]
    return [k for k in keys if trigger is None or trigger in k.triggers]
