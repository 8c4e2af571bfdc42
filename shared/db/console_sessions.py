"""Console sessions: a random id in the cookie, its digest here, expiring and revocable.

A session signed in with a `hookline tokens create` token follows that token (revoked:
signed out); one signed in with `HOOKLINE_ADMIN_TOKEN` carries a binding to it, checked
by the ingress, so changing the admin token signs those sessions out.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from shared.db.pool import Connection
from shared.ids import key_digest


@dataclass(frozen=True)
class SessionRow:
    """What a live session signed in with: an api_tokens row (and its workspace), or the admin token."""

    token_id: uuid.UUID | None
    workspace: str | None
    admin_binding: bytes | None


def new_session_id() -> str:
    """A fresh session id: 32 random bytes, URL-safe (the cookie's value)."""
    return secrets.token_urlsafe(32)


async def live_token(connection: Connection, token: str) -> tuple[uuid.UUID, str | None] | None:
    """(id, workspace) of a live api_tokens token, or None."""
    row = await connection.fetchrow(
        "select id, workspace from api_tokens where digest = $1 and revoked_at is null", key_digest(token)
    )
    return None if row is None else (row["id"], row["workspace"])


async def open_session(
    connection: Connection,
    session_id: str,
    token_id: uuid.UUID | None,
    admin_binding: bytes | None,
    lifetime: float,
) -> None:
    """Store a new session (and drop expired ones, so the table stays small)."""
    await connection.execute("delete from console_sessions where expires_at < now()")
    await connection.execute(
        "insert into console_sessions (digest, token_id, admin_binding, expires_at)"
        " values ($1, $2, $3, now() + make_interval(secs => $4))",
        key_digest(session_id),
        token_id,
        admin_binding,
        float(lifetime),
    )


async def find_session(connection: Connection, session_id: str) -> SessionRow | None:
    """The live session of an id: not expired, and its token not revoked."""
    row = await connection.fetchrow(
        "select s.token_id, s.admin_binding, t.workspace from console_sessions s"
        " left join api_tokens t on t.id = s.token_id"
        " where s.digest = $1 and s.expires_at > now()"
        " and (s.token_id is null or t.revoked_at is null)",
        key_digest(session_id),
    )
    if row is None:
        return None
    return SessionRow(row["token_id"], row["workspace"], row["admin_binding"])


async def close_session(connection: Connection, session_id: str) -> None:
    """Sign out: the session is gone, its cookie refused from now on."""
    await connection.execute("delete from console_sessions where digest = $1", key_digest(session_id))
