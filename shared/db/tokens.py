"""Management API tokens: shown once, stored as SHA-256 digests, scoped to one workspace or all.

`HOOKLINE_ADMIN_TOKEN` (from the environment) is always an admin token; these are the ones
made with `hookline tokens create`, so an operator can hand a team a token that only sees
its own workspace, and revoke it without restarting anything.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from shared.db.pool import Connection
from shared.errors import NotFound
from shared.ids import key_digest, key_display_prefix

TOKEN_PREFIX = "hlt_"  # noqa: S105 (a prefix that tells tokens apart from API keys, no secret)


@dataclass(frozen=True)
class CreatedToken:
    """A token as created: the plain token is here once and nowhere else."""

    id: uuid.UUID
    token: str
    prefix: str
    label: str
    workspace: str | None


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never the token itself."""

    id: uuid.UUID
    workspace: str | None
    label: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def new_token() -> str:
    """A fresh management token: 32 random bytes, URL-safe, recognisable by its prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_token(connection: Connection, workspace: str | None, label: str) -> CreatedToken:
    """Store a new token's digest; `workspace=None` makes an admin token."""
    if workspace is not None:
        exists = await connection.fetchval("select 1 from workspaces where name = $1", workspace)
        if exists is None:
            raise NotFound(f"no workspace {workspace!r}")
    token = new_token()
    token_id = uuid.uuid4()
    await connection.execute(
        "insert into api_tokens (id, workspace, label, prefix, digest) values ($1, $2, $3, $4, $5)",
        token_id,
        workspace,
        label,
        key_display_prefix(token),
        key_digest(token),
    )
    return CreatedToken(token_id, token, key_display_prefix(token), label, workspace)


async def token_scope(connection: Connection, token: str) -> tuple[bool, str | None]:
    """(found, workspace) of a live token; workspace None means every workspace."""
    row = await connection.fetchrow(
        "select workspace from api_tokens where digest = $1 and revoked_at is null", key_digest(token)
    )
    if row is None:
        return False, None
    return True, row["workspace"]


async def list_tokens(connection: Connection, include_revoked: bool = False) -> list[TokenInfo]:
    """Every token, oldest first."""
    rows = await connection.fetch(
        "select id, workspace, label, prefix, created_at, revoked_at from api_tokens"
        " where $1 or revoked_at is null order by created_at",
        include_revoked,
    )
    return [
        TokenInfo(r["id"], r["workspace"], r["label"], r["prefix"], r["created_at"], r["revoked_at"])
        for r in rows
    ]


async def revoke_token(connection: Connection, token_id: str) -> None:
    """Revoke a token by id: refused from the next call on."""
    try:
        key = uuid.UUID(token_id)
    except ValueError:
        raise NotFound(f"no token {token_id!r}") from None
    result = await connection.execute(
        "update api_tokens set revoked_at = now() where id = $1 and revoked_at is null", key
    )
    if result.endswith(" 0"):
        raise NotFound(f"no live token {token_id}")
