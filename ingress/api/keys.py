"""`/api/workspaces/{workspace}/keys`: API keys of a workspace's triggers.

A created key is in the answer once and stored only as a digest; listings show its label
and first characters.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, patch, post

from ingress.api.access import database, visible_workspace
from ingress.dependencies import PoolDep
from shared.db import keys
from shared.db.keys import CreatedKey, KeyInfo
from shared.db.pool import Connection
from shared.errors import NotFound

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
TriggerNames = Annotated[list[str], msgspec.Meta(min_length=1, max_length=100)]


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    """A key to generate (or, with `key`, to store as pasted) and the triggers it opens."""

    label: Label
    triggers: TriggerNames
    key: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class Relabel(msgspec.Struct, forbid_unknown_fields=True):
    """A key's new label."""

    label: Label


class Triggers(msgspec.Struct, forbid_unknown_fields=True):
    """Triggers to attach a key to, or detach it from."""

    triggers: TriggerNames


async def _one(connection: Connection, workspace: str, key_id: uuid.UUID) -> KeyInfo:
    """The key as listed. `key_id` is always the id, never the value a caller named it by."""
    found = [k for k in await keys.list_keys(connection, workspace) if k.id == key_id]
    if not found:
        raise NotFound(f"no live key {key_id} in workspace {workspace}")
    return found[0]


class KeyController(Controller):
    """The key handlers, for a workspace the token sees."""

    path = "/workspaces/{workspace:str}/keys"
    guards = [visible_workspace]

    @get(summary="List keys: label and prefix, never the key")
    async def list_all(
        self, pool: PoolDep, workspace: str, trigger: str | None = None, revoked: bool = False
    ) -> list[KeyInfo]:
        async with database(pool) as connection:
            return await keys.list_keys(connection, workspace, trigger, revoked)

    @post(summary="Create a key (shown in this answer only)", status_code=201)
    async def create(self, pool: PoolDep, workspace: str, data: NewKey) -> CreatedKey:
        async with database(pool) as connection:
            return await keys.create_key(connection, workspace, data.triggers, data.label, data.key)

    @patch("/{key_id:str}", summary="Relabel a key")
    async def relabel(self, pool: PoolDep, workspace: str, key_id: str, data: Relabel) -> KeyInfo:
        async with database(pool) as connection:
            found = await keys.relabel_key(connection, workspace, key_id, data.label)
            return await _one(connection, workspace, found)

    @delete("/{key_id:str}", summary="Revoke a key (refused by every ingress within a second)")
    async def revoke(self, pool: PoolDep, workspace: str, key_id: str) -> None:
        async with database(pool) as connection:
            await keys.revoke_key(connection, workspace, key_id)

    @post("/{key_id:str}/attach", summary="Let a key open more triggers", status_code=200)
    async def attach(self, pool: PoolDep, workspace: str, key_id: str, data: Triggers) -> KeyInfo:
        async with database(pool) as connection:
            found = await keys.attach_key(connection, workspace, key_id, data.triggers)
            return await _one(connection, workspace, found)

    @post("/{key_id:str}/detach", summary="Stop a key opening some triggers", status_code=200)
    async def detach(self, pool: PoolDep, workspace: str, key_id: str, data: Triggers) -> KeyInfo:
        async with database(pool) as connection:
            found = await keys.detach_key(connection, workspace, key_id, data.triggers)
            return await _one(connection, workspace, found)
