"""`/api/workspaces/{workspace}/secrets`: set (PUT), list names (GET), delete a workspace's secrets.

A value goes in once and never comes out: no answer holds it, only `${secret:NAME}` in the
workspace's own definitions and connections resolves it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, delete, get, put

from ingress.api.access import database, visible_workspace
from ingress.dependencies import CipherDep, PoolDep
from shared.db.secrets import (
    MAX_VALUE_BYTES,
    SecretInfo,
    delete_secret,
    list_secrets,
    require_cipher,
    set_secret,
)


class SecretValue(msgspec.Struct, forbid_unknown_fields=True):
    """The value to store under a secret's name."""

    value: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_VALUE_BYTES)]


class SecretController(Controller):
    """The secret handlers, for a workspace the token sees."""

    path = "/workspaces/{workspace:str}/secrets"
    guards = [visible_workspace]

    @get(summary="List a workspace's secrets (names only, never values)")
    async def list_all(self, pool: PoolDep, workspace: str) -> list[SecretInfo]:
        async with database(pool) as connection:
            return await list_secrets(connection, workspace)

    @put("/{name:str}", summary="Set a secret (its value is never shown again)")
    async def store(
        self, pool: PoolDep, cipher: CipherDep, workspace: str, name: str, data: SecretValue
    ) -> Response[None]:
        usable = require_cipher(cipher)
        async with database(pool) as connection:
            created = await set_secret(connection, usable, workspace, name, data.value)
        return Response(None, status_code=201 if created else 204)

    @delete("/{name:str}", summary="Delete a secret")
    async def remove(self, pool: PoolDep, workspace: str, name: str) -> None:
        async with database(pool) as connection:
            await delete_secret(connection, workspace, name)
