"""`/api/workspaces/{workspace}/secrets`: set (PUT), list names (GET), delete a workspace's secrets.

A value goes in once and never comes out: no answer holds it, only `${secret:NAME}` in the
workspace's own definitions and connections resolves it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Response, delete, get, put

from ingress.api.access import Scope, database
from ingress.api.resources import Resources
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


def routes(res: Resources) -> list[Any]:
    """The secret handlers."""
    base = "/workspaces/{workspace:str}/secrets"

    @get(base, summary="List a workspace's secrets (names only, never values)")
    async def list_all(access: Scope, workspace: str) -> list[SecretInfo]:
        access.check(workspace)
        async with database(res) as connection:
            return await list_secrets(connection, workspace)

    @put(base + "/{name:str}", summary="Set a secret (its value is never shown again)")
    async def store(access: Scope, workspace: str, name: str, data: SecretValue) -> Response[None]:
        access.check(workspace)
        cipher = require_cipher(res.cipher)
        async with database(res) as connection:
            created = await set_secret(connection, cipher, workspace, name, data.value)
        return Response(None, status_code=201 if created else 204)

    @delete(base + "/{name:str}", summary="Delete a secret")
    async def remove(access: Scope, workspace: str, name: str) -> None:
        access.check(workspace)
        async with database(res) as connection:
            await delete_secret(connection, workspace, name)

    return [list_all, store, remove]
