"""Who may call the management API: the admin token, or a token of one workspace.

`Authorization: Bearer <token>`. `HOOKLINE_ADMIN_TOKEN` sees every workspace; tokens made
with `hookline tokens create` are looked up by digest and see one workspace (or all, for
an admin token made that way). The console signs in with the same tokens (a cookie).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Request

from ingress.api.resources import Resources
from ingress.errors import AdminUnauthorized, Forbidden
from shared.db.pool import DB_ERRORS, Connection
from shared.db.tokens import TOKEN_PREFIX, token_scope
from shared.errors import DatabaseUnavailable


@dataclass(frozen=True)
class Scope:
    """What a token may see: one workspace, or every one (`workspace is None`)."""

    workspace: str | None

    @property
    def admin(self) -> bool:
        return self.workspace is None

    def check(self, workspace: str) -> None:
        """Raise Forbidden unless `workspace` is visible."""
        if self.workspace is not None and workspace != self.workspace:
            raise Forbidden(f"this token is for workspace {self.workspace!r} only")

    def require_admin(self) -> None:
        if not self.admin:
            raise Forbidden("this needs an admin token")

    def narrow(self, workspace: str | None) -> str | None:
        """The workspace filter to apply: the token's own, or the one asked for."""
        if workspace is not None:
            self.check(workspace)
            return workspace
        return self.workspace


def bearer(request: Request[Any, Any, Any]) -> str | None:
    """The token of `Authorization: Bearer <token>`, if any."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() or None if scheme.lower() == "bearer" else None


async def resolve(res: Resources, token: str | None) -> Scope:
    """The scope of a token; AdminUnauthorized when it is none of ours."""
    admin = res.settings.admin_token
    if token is None:
        raise AdminUnauthorized("a management token is required (Authorization: Bearer ...)")
    if admin is not None and hmac.compare_digest(token.encode(), admin.encode()):
        return Scope(None)
    if token.startswith(TOKEN_PREFIX):
        async with database(res) as connection:
            found, workspace = await token_scope(connection, token)
        if found:
            return Scope(workspace)
    raise AdminUnauthorized("this token is not valid (revoked, or never issued)")


def scope_provider(res: Resources) -> Callable[[Request[Any, Any, Any]], Awaitable[Scope]]:
    """The `scope` dependency of every /api handler."""

    async def provide_scope(request: Request[Any, Any, Any]) -> Scope:
        return await resolve(res, bearer(request))

    return provide_scope


@asynccontextmanager
async def database(res: Resources) -> AsyncIterator[Connection]:
    """A pooled connection; DatabaseUnavailable (503) when PostgreSQL cannot be reached."""
    try:
        async with res.pool.acquire(timeout=5) as connection:
            yield connection
    except DB_ERRORS:
        raise DatabaseUnavailable("the database is unreachable right now") from None
