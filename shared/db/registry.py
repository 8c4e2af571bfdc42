"""Workspaces, triggers (versioned) and API keys in PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from shared.db.connections import apply_connections
from shared.db.pool import Connection
from shared.db.secrets import SecretCipher, load_secrets
from shared.errors import NotFound
from shared.spec.model import Trigger, Workspace
from shared.spec.secrets import AuthorKind, Sources, check_auth_references, seal, sources_for
from shared.spec.types import dec_hook, enc_hook

log = logging.getLogger(__name__)

_encode_spec = msgspec.json.Encoder(enc_hook=enc_hook).encode


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
    connection: str | None = None

    def __str__(self) -> str:
        what = f"trigger {self.workspace}/{self.trigger}" if self.trigger else f"workspace {self.workspace}"
        if self.connection:
            what = f"connection {self.workspace}/{self.connection}"
        version = f" (version {self.version})" if self.version is not None else ""
        return f"{what}: {self.action}{version}"


# Who wrote a trigger version (trigger_versions.author): the operator (`hookline apply`, the
# admin token) or a workspace token. Only an operator's literal http `url` is called as written;
# a workspace's is held to the egress policy (shared/spec/egress.py), and its `${env:NAME}` may
# name only what the operator allowed the workspace.
OPERATOR: AuthorKind = "operator"
WORKSPACE: AuthorKind = "workspace"


async def apply_workspace(
    connection: Connection,
    workspace: Workspace,
    *,
    author: AuthorKind = "operator",
    allowed_env: Mapping[str, frozenset[str]] | None = None,
    cipher: SecretCipher | None = None,
) -> list[Change]:
    """Create or update a workspace and its triggers; an unchanged trigger keeps its version.

    `author` is who wrote the definitions (recorded with each version): the operator
    (`hookline apply`, the admin token) or the workspace (its token), whose `${env:NAME}` may
    name only `allowed_env[workspace]`. `cipher` opens the workspace's `${secret:NAME}`.
    """
    changes: list[Change] = []
    inserted = await connection.fetchval(
        "insert into workspaces (name, description) values ($1, $2)"
        " on conflict (name) do update set description = excluded.description"
        " returning (xmax = 0)",
        workspace.workspace,
        workspace.description,
    )
    changes.append(Change(workspace.workspace, None, "created" if inserted else "unchanged"))
    applied = await apply_connections(
        connection, workspace.workspace, workspace.connections, workspace.triggers
    )
    for name, action in applied:
        changes.append(Change(workspace.workspace, None, action, connection=name))
    secrets = (await load_secrets(connection, cipher, workspace.workspace)).get(workspace.workspace, {})
    sources = sources_for(workspace.workspace, author, allowed_env or {}, secrets)
    for trigger in workspace.triggers:
        check_auth_references(trigger, sources)
        changes.append(await _apply_trigger(connection, workspace.workspace, trigger, author, sources))
    return changes


async def _apply_trigger(
    connection: Connection, workspace: str, trigger: Trigger, author: AuthorKind, sources: Sources
) -> Change:
    row = await connection.fetchrow(
        "select id, version, spec, author, deleted_at from triggers"
        " where workspace = $1 and name = $2 for update",
        workspace,
        trigger.name,
    )
    spec = spec_to_json(seal(trigger, spec_from_json(row["spec"]) if row is not None else None, sources))
    if row is None:
        trigger_id = await connection.fetchval(
            "insert into triggers (workspace, name, version, spec, author) values ($1, $2, 1, $3, $4)"
            " returning id",
            workspace,
            trigger.name,
            spec,
            author,
        )
        version, action = 1, "created"
    elif row["spec"] == spec and row["author"] == author and row["deleted_at"] is None:
        return Change(workspace, trigger.name, "unchanged", row["version"])
    else:
        # Another author is a new version too: what its references may resolve changed.
        trigger_id, version = row["id"], row["version"] + 1
        action = "updated" if row["deleted_at"] is None else "created"
        await connection.execute(
            "update triggers set version = $2, spec = $3, author = $4, updated_at = now(), deleted_at = null"
            " where id = $1",
            trigger_id,
            version,
            spec,
            author,
        )
    await connection.execute(
        "insert into trigger_versions (trigger_id, version, spec, author) values ($1, $2, $3, $4)",
        trigger_id,
        version,
        spec,
        author,
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
    paused: bool = False
    author: AuthorKind = "workspace"


async def load_registry(connection: Connection) -> list[RegistryRow]:
    """Every live trigger, current version, with its unrevoked keys' digests."""
    rows = await connection.fetch(
        "select t.workspace, t.name, t.version, t.spec, t.author,"
        " coalesce(array_agg(k.digest) filter (where k.digest is not null), '{}') as digests,"
        " exists (select 1 from trigger_pauses p where p.workspace = t.workspace and p.trigger = t.name"
        "         and p.resumed_at is null) as paused"
        " from triggers t"
        " left join api_key_triggers kt on kt.trigger_id = t.id"
        " left join api_keys k on k.id = kt.key_id and k.revoked_at is null"
        " where t.deleted_at is null"
        " group by t.id"
    )
    loaded = []
    for r in rows:
        try:
            spec = spec_from_json(r["spec"])
        except (msgspec.ValidationError, ValueError):
            # Validated at apply; a stored spec that no longer decodes is skipped, loudly,
            # rather than taking every other trigger (and key revocations) down with it.
            log.exception("trigger %s/%s cannot be decoded", r["workspace"], r["name"])
            continue
        loaded.append(
            RegistryRow(
                r["workspace"],
                r["name"],
                r["version"],
                spec,
                frozenset(r["digests"]),
                r["paused"],
                r["author"],
            )
        )
    return loaded


async def trigger_version(
    connection: Connection, workspace: str, trigger: str, version: int
) -> tuple[Trigger, str]:
    """One version of a trigger and who wrote it (versions never change: callers may cache them)."""
    row = await connection.fetchrow(
        "select v.spec, v.author from trigger_versions v join triggers t on t.id = v.trigger_id"
        " where t.workspace = $1 and t.name = $2 and v.version = $3",
        workspace,
        trigger,
        version,
    )
    if row is None:
        raise NotFound(f"trigger {workspace}/{trigger} has no version {version}")
    return spec_from_json(row["spec"]), row["author"]
