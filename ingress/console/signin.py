"""The console's way in and out: the sign-in page and form, signing out (no session needed)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from ingress.console.session import (
    cleared_cookies,
    login_cookie,
    login_csrf_ok,
    new_login_value,
    secure,
    session_cookie,
    sign_in,
    sign_out,
)
from ingress.dependencies import PoolDep, SettingsDep
from ingress.errors import AdminUnauthorized
from shared.settings import Settings

FORM = Body(media_type=RequestEncodingType.URL_ENCODED)
# The only body a stranger can make the console read: a token and a CSRF value fit in far less.
SIGN_IN_MAX_BYTES = 16_384


class SignIn(msgspec.Struct):
    """The sign-in form."""

    token: Annotated[str, msgspec.Meta(max_length=500)] = ""
    csrf: Annotated[str, msgspec.Meta(max_length=100)] = ""


def sign_in_page(
    settings: Settings, request: Request[Any, Any, Any], error: str = "", status: int = 200
) -> Template:
    """The sign-in form, with a fresh login CSRF value (in the form and in a cookie)."""
    value = new_login_value()
    page = Template(template_name="login.html", context={"error": error, "csrf": value}, status_code=status)
    page.set_cookie(login_cookie(value, secure(settings, request)))
    return page


class SignInController(Controller):
    """`/console/`, `/console/login` and `/console/logout`."""

    @get("/")
    async def home(self) -> Redirect:
        return Redirect("/console/runs")

    @get("/login")
    async def login_page(self, request: Request[Any, Any, Any], settings: SettingsDep) -> Template:
        return sign_in_page(settings, request)

    @post("/login", status_code=303, request_max_body_size=SIGN_IN_MAX_BYTES)
    async def login(
        self,
        request: Request[Any, Any, Any],
        pool: PoolDep,
        settings: SettingsDep,
        data: Annotated[SignIn, FORM],
    ) -> Redirect | Template:
        if not login_csrf_ok(request, data.csrf):
            # Login CSRF: another site's form cannot sign this browser in to a token of its choosing.
            return sign_in_page(settings, request, "The sign-in form was stale; please sign in again.", 403)
        try:
            session_id = await sign_in(pool, settings, data.token.strip())
        except AdminUnauthorized:
            return sign_in_page(settings, request, "That token is not valid.", 401)
        is_secure = secure(settings, request)
        response = Redirect("/console/runs", status_code=303)
        response.set_cookie(cleared_cookies(is_secure)[1])
        response.set_cookie(session_cookie(session_id, is_secure, settings.console_session_seconds))
        return response

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any], pool: PoolDep, settings: SettingsDep) -> Redirect:
        await sign_out(pool, request)
        response = Redirect("/console/login", status_code=303)
        for cookie in cleared_cookies(secure(settings, request)):
            response.set_cookie(cookie)
        return response
