"""Console sign-in: a server-side session behind an HttpOnly, SameSite=Strict cookie, and CSRF.

The cookie holds a random session id, never the token typed in: PostgreSQL keeps the id's
digest, what it signed in with and when it expires (shared/db/console_sessions.py). Every
page looks the session up, so signing out, an expired session or a revoked token signs the
console out at once. Every form carries a CSRF value derived from the session id, checked
on every POST in addition to SameSite; the sign-in form carries one of its own (a random
value also set as a cookie of the sign-in page: login CSRF). Both checks of a signed-in
route are guards (`signed_in`, then `same_console`), written once for the whole console.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, cast
from urllib.parse import parse_qs

import asyncpg
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler

from ingress.api.access import Scope, database, grant
from ingress.dependencies import pool_of, settings_of
from ingress.errors import AdminUnauthorized, Forbidden
from shared.db.console_sessions import close_session, find_session, live_token, new_session_id, open_session
from shared.db.tokens import TOKEN_PREFIX
from shared.settings import Settings

COOKIE = "hookline_console"
LOGIN_COOKIE = "hookline_console_login"
LOGIN_PATH = "/console/login"
_MAX_ID = 100  # a session id is 43 characters; anything much longer is not one of ours
_CSRF = "hookline_csrf"  # the key of the request's state `signed_in` keeps the CSRF value under

CsrfDep = NamedDependency[str]  # the session's CSRF value, for the forms a page renders


class NotSignedIn(Exception):
    """Raised when a console page is asked for without a valid sign-in (-> the sign-in page)."""


def csrf_value(session_id: str) -> str:
    """The CSRF value of a session: a keyed digest of its id (never the id itself)."""
    return hmac.new(session_id.encode(), b"hookline-console-csrf", hashlib.sha256).hexdigest()


def admin_binding(admin_token: str, session_id: str) -> bytes:
    """Ties an admin session to the admin token it signed in with (see the migration)."""
    return hmac.new(admin_token.encode(), session_id.encode(), hashlib.sha256).digest()


async def sign_in(pool: asyncpg.Pool, settings: Settings, token: str) -> str:
    """A new session for a valid token (its id, for the cookie); AdminUnauthorized otherwise."""
    admin = settings.admin_token
    session_id = new_session_id()
    lifetime = settings.console_session_seconds
    async with database(pool) as connection:
        if admin is not None and hmac.compare_digest(token.encode(), admin.encode()):
            await open_session(connection, session_id, None, admin_binding(admin, session_id), lifetime)
            return session_id
        found = await live_token(connection, token) if token.startswith(TOKEN_PREFIX) else None
        if found is None:
            raise AdminUnauthorized("this token is not valid (revoked, or never issued)")
        await open_session(connection, session_id, found[0], None, lifetime)
    return session_id


async def signed_in(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: the request's session is live (NotSignedIn -> the sign-in page), before its body is read.

    Grants the session's scope (the `access` dependency) and keeps its CSRF value (`csrf`).
    """
    session_id = connection.cookies.get(COOKIE)
    if not session_id or len(session_id) > _MAX_ID:
        raise NotSignedIn
    state = connection.app.state
    async with database(pool_of(state)) as db:
        row = await find_session(db, session_id)
    if row is None:
        raise NotSignedIn
    if row.token_id is None:
        admin = settings_of(state).admin_token
        bound = row.admin_binding or b""
        if admin is None or not hmac.compare_digest(bound, admin_binding(admin, session_id)):
            raise NotSignedIn
    grant(connection, Scope(row.workspace))
    connection.state[_CSRF] = csrf_value(session_id)


def provide_csrf(request: Request[Any, Any, Any]) -> str:
    """The `csrf` dependency: the session's CSRF value, for the forms a page renders."""
    value: str = request.state[_CSRF]
    return value


async def same_console(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: a form that changes something (any method but GET and HEAD) carries the session's
    CSRF value (Forbidden otherwise). Runs after `signed_in`: only a signed-in browser's body is read."""
    request = cast("Request[Any, Any, Any]", connection)  # the console has HTTP routes only
    if request.method in ("GET", "HEAD"):
        return
    body = await request.body()  # kept for the handler, which parses it again
    given = parse_qs(body, keep_blank_values=True).get(b"csrf", [])
    check_csrf(given[0].decode("latin-1") if len(given) == 1 else None, connection.state[_CSRF])


async def sign_out(pool: asyncpg.Pool, request: Request[Any, Any, Any]) -> None:
    """End the request's session, if it has one: its cookie is refused from now on."""
    session_id = request.cookies.get(COOKIE)
    if session_id and len(session_id) <= _MAX_ID:
        async with database(pool) as connection:
            await close_session(connection, session_id)


def check_csrf(request_csrf: str | None, expected: str) -> None:
    """Raise Forbidden unless the form's CSRF value is the session's."""
    if not request_csrf or not hmac.compare_digest(request_csrf.encode(), expected.encode()):
        raise Forbidden("the form is stale or not from this console; reload the page")


def login_csrf_ok(request: Request[Any, Any, Any], given: str) -> bool:
    """Whether the sign-in form's value is the one its page set as a cookie (double submit)."""
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def secure(settings: Settings, request: Request[Any, Any, Any]) -> bool:
    """Whether cookies get `Secure`: by setting, or https as uvicorn saw it (TLS, or a trusted proxy)."""
    return settings.secure_cookies or request.url.scheme == "https"


def login_cookie(value: str, is_secure: bool) -> Cookie:
    """The sign-in page's CSRF value, sent back only to the sign-in form."""
    return Cookie(
        key=LOGIN_COOKIE,
        value=value,
        path=LOGIN_PATH,
        httponly=True,
        samesite="strict",
        secure=is_secure,
        max_age=3600,
    )


def new_login_value() -> str:
    """A fresh sign-in CSRF value."""
    return secrets.token_urlsafe(24)


def session_cookie(session_id: str, is_secure: bool, max_age: int) -> Cookie:
    """The sign-in cookie: script cannot read it, other sites cannot send it."""
    return Cookie(
        key=COOKIE,
        value=session_id,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=is_secure,
        max_age=max_age,
    )


def cleared_cookies(is_secure: bool) -> list[Cookie]:
    """Signing out (and the sign-in value, once used)."""
    return [
        Cookie(key=key, value="", path=path, httponly=True, samesite="strict", secure=is_secure, max_age=0)
        for key, path in ((COOKIE, "/console"), (LOGIN_COOKIE, LOGIN_PATH))
    ]
