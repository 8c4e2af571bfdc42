"""Console sign-in: the management token in an HttpOnly, SameSite=Strict cookie, and CSRF.

The cookie holds the token the operator typed (checked on every page like an API call,
so a revoked token signs the console out at once). Every form carries a CSRF value
derived from the token, checked on every POST, in addition to SameSite.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie

from ingress.api.access import Scope, resolve
from ingress.api.resources import Resources
from ingress.errors import AdminUnauthorized, Forbidden

COOKIE = "hookline_console"
MAX_AGE = 8 * 3600


class NotSignedIn(Exception):
    """Raised when a console page is asked for without a valid sign-in (-> the sign-in page)."""


def csrf_value(token: str) -> str:
    """The CSRF value of a session: a keyed digest of its token (never the token itself)."""
    return hmac.new(token.encode(), b"hookline-console-csrf", hashlib.sha256).hexdigest()


async def signed_in(res: Resources, request: Request[Any, Any, Any]) -> tuple[Scope, str]:
    """(scope, csrf value) of the request's session; NotSignedIn when there is none."""
    token = request.cookies.get(COOKIE)
    try:
        scope = await resolve(res, token)
    except AdminUnauthorized:
        raise NotSignedIn from None
    assert token is not None
    return scope, csrf_value(token)


def check_csrf(request_csrf: str | None, expected: str) -> None:
    """Raise Forbidden unless the form's CSRF value is the session's."""
    if not request_csrf or not hmac.compare_digest(request_csrf.encode(), expected.encode()):
        raise Forbidden("the form is stale or not from this console; reload the page")


def session_cookie(token: str, secure: bool) -> Cookie:
    """The sign-in cookie: script cannot read it, other sites cannot send it."""
    return Cookie(
        key=COOKIE,
        value=token,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=secure,
        max_age=MAX_AGE,
    )


def cleared_cookie() -> Cookie:
    """Signing out."""
    return Cookie(key=COOKIE, value="", path="/console", httponly=True, samesite="strict", max_age=0)
