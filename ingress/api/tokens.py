"""`/api/tokens` (admin): management tokens for one workspace, shown once, stored as digests."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import delete, get, post

from ingress.api.access import Scope, database
from ingress.api.resources import Resources
from shared.db.tokens import CreatedToken, TokenInfo, create_token, list_tokens, revoke_token


class NewToken(msgspec.Struct, forbid_unknown_fields=True):
    """A token for one workspace (or, with no workspace, an admin token)."""

    label: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    workspace: str | None = None


def routes(res: Resources) -> list[Any]:
    """The token handlers."""

    @get("/tokens", summary="List management tokens (never the tokens themselves)")
    async def list_all(access: Scope, revoked: bool = False) -> list[TokenInfo]:
        access.require_admin()
        async with database(res) as connection:
            return await list_tokens(connection, revoked)

    @post("/tokens", summary="Create a management token (shown in this answer only)", status_code=201)
    async def create(access: Scope, data: NewToken) -> CreatedToken:
        access.require_admin()
        async with database(res) as connection:
            return await create_token(connection, data.workspace, data.label)

    @delete("/tokens/{token_id:str}", summary="Revoke a management token")
    async def revoke(access: Scope, token_id: str) -> None:
        access.require_admin()
        async with database(res) as connection:
            await revoke_token(connection, token_id)

    return [list_all, create, revoke]
