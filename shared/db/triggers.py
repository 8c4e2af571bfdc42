"""Triggers as operators see them: list, show, versions, define, delete, and the last sample.

The API and the CLI both call these; writes go through `apply_workspace` so a trigger
defined over HTTP is validated and versioned exactly as one applied from a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from shared.db.connections import load_connections
from shared.db.egress import workspace_allow
from shared.db.pool import Connection
from shared.db.registry import OPERATOR, Change, apply_workspace
from shared.db.secrets import SecretCipher
from shared.errors import HooklineError, NotFound, SpecError
from shared.spec.checks import check_caps, check_egress
from shared.spec.egress import AllowEntry, EgressPolicy
from shared.spec.loader import load_document
from shared.spec.secrets import AuthorKind
from shared.spec.types import enc_hook

_to_json = msgspec.json.Encoder(enc_hook=enc_hook).encode


class TriggerExists(HooklineError, ValueError):
    """Raised when creating a trigger whose name a live trigger of the workspace has."""

    problem_type = "trigger-exists"


@dataclass(frozen=True)
class KeyLabel:
    """A key that opens a trigger, as listed (never the key)."""

    id: str
    label: str
    prefix: str


@dataclass(frozen=True)
class TriggerInfo:
    """One trigger with what an operator looks for first."""

    workspace: str
    name: str
    version: int
    description: str
    mode: str
    methods: list[str]
    auth: str
    ordered: Any  # false, true, or {key, partitions}
    paused: bool
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    keys: list[KeyLabel]

    @property
    def path(self) -> str:
        return f"/hooks/{self.workspace}/{self.name}"


@dataclass(frozen=True)
class TriggerVersion:
    """One version of a trigger's definition."""

    version: int
    created_at: datetime
    spec: Any
    author: str  # operator (hookline apply, the admin token) or workspace (its token)


def public_spec(spec: Any) -> Any:
    """A stored spec as it may be shown: a Basic password's hash is left out."""
    if isinstance(spec, dict) and isinstance(spec.get("auth"), dict):
        auth = {k: v for k, v in spec["auth"].items() if k not in ("password", "password_hash")}
        return {**spec, "auth": auth}
    return spec


_SELECT = (
    "select t.workspace, t.name, t.version, t.spec, t.created_at, t.updated_at, t.deleted_at,"
    " exists (select 1 from trigger_pauses p where p.workspace = t.workspace and p.trigger = t.name"
    "         and p.resumed_at is null) as paused,"
    " coalesce((select array_agg(array[k.id::text, k.label, k.prefix] order by k.created_at)"
    "  from api_key_triggers kt join api_keys k on k.id = kt.key_id"
    "  where kt.trigger_id = t.id and k.revoked_at is null), '{}') as keys"
    " from triggers t"
)


def _info(row: Any) -> TriggerInfo:
    spec = row["spec"]
    return TriggerInfo(
        workspace=row["workspace"],
        name=row["name"],
        version=row["version"],
        description=spec.get("description", ""),
        mode=spec.get("mode", "async"),
        methods=list(spec.get("methods", ["POST"])),
        auth=str(spec.get("auth", {}).get("type", "none")),
        ordered=spec.get("ordered", False),
        paused=row["paused"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
        keys=[KeyLabel(*k) for k in row["keys"]],
    )


async def list_triggers(
    connection: Connection, workspace: str | None = None, include_deleted: bool = False
) -> list[TriggerInfo]:
    """Triggers of one workspace (or all), by workspace and name."""
    rows = await connection.fetch(
        _SELECT + " where ($1::text is null or t.workspace = $1) and ($2 or t.deleted_at is null)"
        " order by t.workspace, t.name",
        workspace,
        include_deleted,
    )
    return [_info(r) for r in rows]


async def get_trigger(connection: Connection, workspace: str, name: str) -> tuple[TriggerInfo, Any]:
    """A live trigger and its current definition; NotFound otherwise."""
    row = await connection.fetchrow(
        _SELECT + " where t.workspace = $1 and t.name = $2 and t.deleted_at is null", workspace, name
    )
    if row is None:
        raise NotFound(f"no trigger {workspace}/{name}")
    return _info(row), public_spec(row["spec"])


async def list_versions(connection: Connection, workspace: str, name: str) -> list[TriggerVersion]:
    """Every version ever applied, newest first (a deleted trigger's too)."""
    rows = await connection.fetch(
        "select v.version, v.created_at, v.spec, v.author from trigger_versions v"
        " join triggers t on t.id = v.trigger_id where t.workspace = $1 and t.name = $2"
        " order by v.version desc",
        workspace,
        name,
    )
    if not rows:
        raise NotFound(f"no trigger {workspace}/{name}")
    return [TriggerVersion(r["version"], r["created_at"], public_spec(r["spec"]), r["author"]) for r in rows]


async def define_trigger(
    connection: Connection,
    workspace: str,
    definition: Any,
    *,
    create: bool,
    name: str | None = None,
    max_body_bytes: int,
    author: AuthorKind = "workspace",
    allowed_env: Mapping[str, frozenset[str]] | None = None,
    cipher: SecretCipher | None = None,
    egress_allow: tuple[AllowEntry, ...] = (),
) -> Change:
    """Validate a trigger as written in a trigger file and apply it (a new version if changed).

    `create` refuses a name a live trigger has; otherwise the trigger must exist. The
    workspace's connections take part in the validation, as in a file that declares them.
    `author` is who defines it (the admin token: the operator; a workspace token: the
    workspace, whose `${env:NAME}` may name only `allowed_env[workspace]`).
    It is held to the egress policy unless the operator wrote it: the operator's `egress_allow`
    and the workspace's own list.
    """
    if not isinstance(definition, dict):
        raise SpecError("a trigger definition must be a JSON object")
    if name is not None:
        if definition.get("name", name) != name:
            raise SpecError(f"the definition is named {definition.get('name')!r}, not {name!r}")
        definition = {**definition, "name": name}
    async with connection.transaction():
        description = await connection.fetchval(
            "select description from workspaces where name = $1", workspace
        )
        if description is None:
            raise NotFound(f"no workspace {workspace!r}")
        live = await connection.fetchval(
            "select 1 from triggers where workspace = $1 and name = $2 and deleted_at is null",
            workspace,
            definition.get("name"),
        )
        if create and live:
            raise TriggerExists(f"trigger {workspace}/{definition.get('name')} exists; update it instead")
        if not create and not live:
            raise NotFound(f"no trigger {workspace}/{name}")
        connections = {
            conn: msgspec.json.decode(_to_json(spec))
            for (ws, conn), spec in (await load_connections(connection)).items()
            if ws == workspace
        }
        document = {
            "workspace": workspace,
            "description": description,
            "connections": connections,
            "triggers": [definition],
        }
        (parsed,) = [load_document(document, "definition")]
        try:
            check_caps(parsed, max_body_bytes)  # the deployment's caps (HOOKLINE_MAX_BODY_BYTES)
        except SpecError as exc:
            raise SpecError(f"definition: {exc}") from None
        if author != OPERATOR:
            policy = EgressPolicy(egress_allow).with_allowed(await workspace_allow(connection, workspace))
            try:
                for trigger in parsed.triggers:
                    check_egress(trigger, policy)
            except SpecError as exc:
                raise SpecError(f"definition: {exc}") from None
        changes = await apply_workspace(
            connection, parsed, author=author, allowed_env=allowed_env, cipher=cipher
        )
    return next(c for c in changes if c.trigger is not None)


async def delete_trigger(connection: Connection, workspace: str, name: str) -> None:
    """Soft delete: the URL answers 404, its queue routes are removed, its runs stay.

    A pause ends with it, carried out as a resume (what its hold queue kept goes back to the
    work queue, where a deleted trigger's calls are dead-lettered for an operator to see),
    so a trigger made again under the name does not start out paused.
    """
    async with connection.transaction():
        result = await connection.execute(
            "update triggers set deleted_at = now(), updated_at = now()"
            " where workspace = $1 and name = $2 and deleted_at is null",
            workspace,
            name,
        )
        if result.endswith(" 0"):
            raise NotFound(f"no trigger {workspace}/{name}")
        await connection.execute(
            "update trigger_pauses set resumed_at = now()"
            " where workspace = $1 and trigger = $2 and resumed_at is null",
            workspace,
            name,
        )
        await connection.execute(
            "delete from trigger_samples where workspace = $1 and trigger = $2", workspace, name
        )


@dataclass(frozen=True)
class Sample:
    """The last accepted call of a trigger, as the variables a workflow sees under `request`."""

    execution_id: str
    received_at: datetime
    request: dict[str, Any]


async def latest_sample(connection: Connection, workspace: str, name: str) -> Sample:
    """The newest accepted call's `request` variables: the ingress's sample, else (a call
    accepted before samples were kept) the newest recorded run's."""
    row = await connection.fetchrow(
        "select execution_id as id, received_at, request from trigger_samples"
        " where workspace = $1 and trigger = $2",
        workspace,
        name,
    ) or await connection.fetchrow(
        "select id, received_at, request from executions where workspace = $1 and trigger = $2"
        " order by id desc limit 1",
        workspace,
        name,
    )
    if row is None:
        raise NotFound(f"trigger {workspace}/{name} has accepted no call yet; send one first")
    request = row["request"] or {}
    variables = {
        "method": request.get("method"),
        "path": request.get("path"),
        "query": request.get("query", {}),
        "headers": request.get("headers", {}),
        "content_type": request.get("content_type"),
        "body_kind": request.get("body_kind", "empty"),
        "body": request.get("body"),
    }
    return Sample(str(row["id"]), row["received_at"], variables)
