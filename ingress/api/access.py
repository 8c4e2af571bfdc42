"""Who may call the management API: the admin token, or a token of one workspace.

`Authorization: Bearer <token>`. `HOOKLINE_ADMIN_TOKEN` sees every workspace; tokens made
with `hookline tokens create` are looked up by digest and see one workspace (or all, for
an admin token made that way). The console signs in with the same tokens (a cookie).

The token is checked by a guard, before the body is read: a caller without one cannot make
the ingress read (or parse) what it sent. What the token may see is then the `access`
dependency of every handler, and `visible_workspace` / `admin_only` are the guards that
hold a route to it.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler

from ingress.dependencies import pool_of, settings_of
from ingress.errors import AdminUnauthorized, Forbidden
from shared.db.pool import DB_ERRORS, Connection
from shared.db.tokens import TOKEN_PREFIX, token_scope
from shared.errors import DatabaseUnavailable

# The largest body the management API and the console read (a trigger definition, a form),
# once the caller is known.
MAX_BODY_BYTES = 4 * 1_048_576
_GRANTED = "hookline_access"  # the key of the request's state the guards fill


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


AccessDep = NamedDependency[Scope]  # what the caller may see, as the guard found it


def bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The token of `Authorization: Bearer <token>`, if any."""
    scheme, _, given = connection.headers.get("authorization", "").partition(" ")
    return given.strip() or None if scheme.lower() == "bearer" else None


async def resolve(state: State, token: str | None) -> Scope:
    """The scope of a token; AdminUnauthorized when it is none of ours."""
    admin = settings_of(state).admin_token
    if token is None:
        raise AdminUnauthorized("a management token is required (Authorization: Bearer ...)")
    if admin is not None and hmac.compare_digest(token.encode(), admin.encode()):
        return Scope(None)
    if token.startswith(TOKEN_PREFIX):
        async with database(pool_of(state)) as connection:
            found, workspace = await token_scope(connection, token)
        if found:
            return Scope(workspace)
    raise AdminUnauthorized("this token is not valid (revoked, or never issued)")


def grant(connection: ASGIConnection[Any, Any, Any, Any], scope: Scope) -> None:
    """Record what the caller may see, for the guards and handlers after this one."""
    connection.state[_GRANTED] = scope


def access_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Scope:
    """What an earlier guard (`token_guard`, the console's `signed_in`) found the caller may see."""
    scope: Scope = connection.state[_GRANTED]
    return scope


def provide_access(request: Request[Any, Any, Any]) -> Scope:
    """The `access` dependency."""
    return access_of(request)


async def token_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Every /api route: a token of ours (401 otherwise), checked before the body is read."""
    grant(connection, await resolve(connection.app.state, bearer(connection)))


def visible_workspace(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A route under `{workspace}`: the caller sees that workspace (403 otherwise)."""
    access_of(connection).check(connection.path_params["workspace"])


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A route for the operator: an admin token (403 otherwise)."""
    access_of(connection).require_admin()


@asynccontextmanager
async def database(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A pooled connection; DatabaseUnavailable (503) when PostgreSQL cannot be reached."""
    try:
        async with pool.acquire(timeout=5) as connection:
            yield connection
    except DB_ERRORS:
        raise DatabaseUnavailable("the database is unreachable right now") from None
