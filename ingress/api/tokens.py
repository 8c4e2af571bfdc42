"""`/api/tokens` (admin): management tokens for one workspace, shown once, stored as digests."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, post

from ingress.api.access import admin_only, database
from ingress.dependencies import PoolDep
from shared.db.tokens import CreatedToken, TokenInfo, create_token, list_tokens, revoke_token


class NewToken(msgspec.Struct, forbid_unknown_fields=True):
    """A token for one workspace (or, with no workspace, an admin token)."""

    label: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    workspace: str | None = None


class TokenController(Controller):
    """The token handlers (admin)."""

    path = "/tokens"
    guards = [admin_only]

    @get(summary="List management tokens (never the tokens themselves)")
    async def list_all(self, pool: PoolDep, revoked: bool = False) -> list[TokenInfo]:
        async with database(pool) as connection:
            return await list_tokens(connection, revoked)

    @post(summary="Create a management token (shown in this answer only)", status_code=201)
    async def create(self, pool: PoolDep, data: NewToken) -> CreatedToken:
        async with database(pool) as connection:
            return await create_token(connection, data.workspace, data.label)

    @delete("/{token_id:str}", summary="Revoke a management token")
    async def revoke(self, pool: PoolDep, token_id: str) -> None:
        async with database(pool) as connection:
            await revoke_token(connection, token_id)
