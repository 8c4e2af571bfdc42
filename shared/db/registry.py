"""Workspaces, triggers (versioned) and API keys in PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from shared.db.pool import Connection
from shared.errors import HooklineError, NotFound
from shared.ids import MIN_PASTED_KEY_LENGTH, key_digest, key_display_prefix, new_api_key
from shared.spec.model import ApiKeyAuth, Trigger, Workspace
from shared.spec.types import dec_hook, enc_hook

_encode_spec = msgspec.json.Encoder(enc_hook=enc_hook).encode


class KeyRejected(HooklineError, ValueError):
    """Raised when a pasted key is too short or already in use."""

    problem_type = "key-rejected"


def spec_to_json(trigger: Trigger) -> Any:
    """A trigger as the JSON value stored in the registry."""
    return msgspec.json.decode(_encode_spec(trigger))


def spec_from_json(value: Any) -> Trigger:
    """A stored trigger back into its Struct."""
    return msgspec.convert(value, Trigger, dec_hook=dec_hook)


@dataclass(frozen=True)
class Change:
    """What `apply` did to one workspace or trigger."""

    workspace: str
    trigger: str | None
    action: str  # created | updated | unchanged
    version: int | None = None

    def __str__(self) -> str:
        what = f"trigger {self.workspace}/{self.trigger}" if self.trigger else f"workspace {self.workspace}"
        version = f" (version {self.version})" if self.version is not None else ""
        return f"{what}: {self.action}{version}"


async def apply_workspace(connection: Connection, workspace: Workspace) -> list[Change]:
    """Create or update a workspace and its triggers; an unchanged trigger keeps its version."""
    changes: list[Change] = []
    inserted = await connection.fetchval(
        "insert into workspaces (name, description) values ($1, $2)"
        " on conflict (name) do update set description = excluded.description"
        " returning (xmax = 0)",
        workspace.workspace,
        workspace.description,
    )
    changes.append(Change(workspace.workspace, None, "created" if inserted else "unchanged"))
    for trigger in workspace.triggers:
        changes.append(await _apply_trigger(connection, workspace.workspace, trigger))
    return changes


async def _apply_trigger(connection: Connection, workspace: str, trigger: Trigger) -> Change:
    spec = spec_to_json(trigger)
    row = await connection.fetchrow(
        "select id, version, spec, deleted_at from triggers where workspace = $1 and name = $2 for update",
        workspace,
        trigger.name,
    )
    if row is None:
        trigger_id = await connection.fetchval(
            "insert into triggers (workspace, name, version, spec) values ($1, $2, 1, $3) returning id",
            workspace,
            trigger.name,
            spec,
        )
        version, action = 1, "created"
    elif row["spec"] == spec and row["deleted_at"] is None:
        return Change(workspace, trigger.name, "unchanged", row["version"])
    else:
        trigger_id, version = row["id"], row["version"] + 1
        action = "updated" if row["deleted_at"] is None else "created"
        await connection.execute(
            "update triggers set version = $2, spec = $3, updated_at = now(), deleted_at = null"
            " where id = $1",
            trigger_id,
            version,
            spec,
        )
    await connection.execute(
        "insert into trigger_versions (trigger_id, version, spec) values ($1, $2, $3)",
        trigger_id,
        version,
        spec,
    )
    return Change(workspace, trigger.name, action, version)


@dataclass(frozen=True)
class RegistryRow:
    """A live trigger with the digests of the keys that open it."""

    workspace: str
    name: str
    version: int
    spec: Trigger
    key_digests: frozenset[bytes]


async def load_registry(connection: Connection) -> list[RegistryRow]:
    """Every live trigger, current version, with its unrevoked keys' digests."""
    rows = await connection.fetch(
        "select t.workspace, t.name, t.version, t.spec,"
        " coalesce(array_agg(k.digest) filter (where k.digest is not null), '{}') as digests"
        " from triggers t"
        " left join api_key_triggers kt on kt.trigger_id = t.id"
        " left join api_keys k on k.id = kt.key_id and k.revoked_at is null"
        " where t.deleted_at is null"
        " group by t.id"
    )
    return [
        RegistryRow(
            r["workspace"],
            r["name"],
            r["version"],
            spec_from_json(r["spec"]),
            frozenset(r["digests"]),
        )
        for r in rows
    ]


async def trigger_version(connection: Connection, workspace: str, trigger: str, version: int) -> Trigger:
    """One version of a trigger (versions never change, so callers may cache it)."""
    spec = await connection.fetchval(
        "select v.spec from trigger_versions v join triggers t on t.id = v.trigger_id"
        " where t.workspace = $1 and t.name = $2 and v.version = $3",
        workspace,
        trigger,
        version,
    )
    if spec is None:
        raise NotFound(f"trigger {workspace}/{trigger} has no version {version}")
    return spec_from_json(spec)


@dataclass(frozen=True)
class CreatedKey:
    """A key as created: the plain key is here once and nowhere else."""

    id: uuid.UUID
    key: str
    prefix: str
    label: str


async def create_key(
    connection: Connection,
    workspace: str,
    triggers: list[str],
    label: str,
    key: str | None = None,
) -> CreatedKey:
    """Store a new (or pasted) key's digest and attach it to triggers of the workspace."""
    if key is None:
        key = new_api_key()
    elif len(key) < MIN_PASTED_KEY_LENGTH:
        raise KeyRejected(f"a pasted key must have at least {MIN_PASTED_KEY_LENGTH} characters")
    async with connection.transaction():
        trigger_ids = []
        for name in triggers:
            row = await connection.fetchrow(
                "select id, spec from triggers where workspace = $1 and name = $2 and deleted_at is null",
                workspace,
                name,
            )
            if row is None:
                raise NotFound(f"trigger {workspace}/{name} does not exist")
            if not isinstance(spec_from_json(row["spec"]).auth, ApiKeyAuth):
                raise KeyRejected(f"trigger {workspace}/{name} does not use API keys (auth type)")
            trigger_ids.append(row["id"])
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
            raise KeyRejected("this key is already in use; generate a new one") from None
        await connection.executemany(
            "insert into api_key_triggers (key_id, trigger_id) values ($1, $2)",
            [(key_id, t) for t in trigger_ids],
        )
    return CreatedKey(key_id, key, key_display_prefix(key), label)


async def revoke_keys_labelled(connection: Connection, workspace: str, label: str) -> int:
    """Revoke every live key of a workspace with this label; return how many."""
    result = await connection.execute(
        "update api_keys set revoked_at = now() where workspace = $1 and label = $2 and revoked_at is null",
        workspace,
        label,
    )
    return int(result.split()[-1])


@dataclass(frozen=True)
class TriggerState:
    """What routing needs to know of a trigger, deleted ones included."""

    workspace: str
    name: str
    ordered: bool
    was_ordered: bool
    deleted: bool


async def trigger_states(connection: Connection) -> list[TriggerState]:
    """Every trigger ever applied, with whether it is (or ever was) ordered."""
    rows = await connection.fetch(
        "select t.workspace, t.name, t.deleted_at is not null as deleted,"
        " coalesce(t.spec->'ordered', 'false') <> 'false' as ordered,"
        " exists (select 1 from trigger_versions v where v.trigger_id = t.id"
        "         and coalesce(v.spec->'ordered', 'false') <> 'false') as was_ordered"
        " from triggers t"
    )
    return [
        TriggerState(r["workspace"], r["name"], r["ordered"], r["was_ordered"], r["deleted"]) for r in rows
    ]
