"""The console's forms: sign in and out, create a key, pause and resume, replay."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from ingress.api.access import database
from ingress.api.deadletters import replay_letters
from ingress.api.executions import replay
from ingress.api.resources import Resources
from ingress.console.pages import sign_in_page
from ingress.console.session import (
    check_csrf,
    cleared_cookies,
    login_csrf_ok,
    secure,
    session_cookie,
    sign_in,
    sign_out,
    signed_in,
)
from ingress.errors import AdminUnauthorized
from shared.db.keys import create_key
from shared.db.pauses import pause_trigger, resume_trigger
from shared.db.triggers import list_triggers

FORM = Body(media_type=RequestEncodingType.URL_ENCODED)


class SignIn(msgspec.Struct):
    """The sign-in form."""

    token: Annotated[str, msgspec.Meta(max_length=500)] = ""
    csrf: Annotated[str, msgspec.Meta(max_length=100)] = ""


class Form(msgspec.Struct):
    """A form that changes something: it carries the session's CSRF value."""

    csrf: str = ""


class KeyForm(msgspec.Struct):
    """The create-key form of a trigger."""

    csrf: str = ""
    label: Annotated[str, msgspec.Meta(max_length=200)] = ""


def actions(res: Resources) -> list[Any]:
    """The POST handlers of the console."""

    @post("/login", include_in_schema=False, status_code=303)
    async def login(request: Request[Any, Any, Any], data: Annotated[SignIn, FORM]) -> Redirect | Template:
        if not login_csrf_ok(request, data.csrf):
            # Login CSRF: another site's form cannot sign this browser in to a token of its choosing.
            return sign_in_page(res, request, "The sign-in form was stale; please sign in again.", 403)
        try:
            session_id = await sign_in(res, data.token.strip())
        except AdminUnauthorized:
            return sign_in_page(res, request, "That token is not valid.", 401)
        is_secure = secure(res, request)
        response = Redirect("/console/runs", status_code=303)
        response.set_cookie(cleared_cookies(is_secure)[1])
        response.set_cookie(session_cookie(session_id, is_secure, res.settings.console_session_seconds))
        return response

    @post("/logout", include_in_schema=False, status_code=303)
    async def logout(request: Request[Any, Any, Any]) -> Redirect:
        await sign_out(res, request)
        response = Redirect("/console/login", status_code=303)
        for cookie in cleared_cookies(secure(res, request)):
            response.set_cookie(cookie)
        return response

    @post("/triggers/{workspace:str}/{name:str}/keys", include_in_schema=False, status_code=200)
    async def new_key(
        request: Request[Any, Any, Any], workspace: str, name: str, data: Annotated[KeyForm, FORM]
    ) -> Template:
        scope, csrf = await signed_in(res, request)
        check_csrf(data.csrf, csrf)
        scope.check(workspace)
        async with database(res) as connection:
            created = await create_key(connection, workspace, [name], data.label.strip() or "console")
            triggers = await list_triggers(connection, scope.workspace)
        context = {
            "scope": scope,
            "csrf": csrf,
            "triggers": triggers,
            "base_url": res.settings.public_url,
            "created": created,
            "created_for": f"{workspace}/{name}",
        }
        return Template(template_name="triggers.html", context=context)

    @post(
        ["/triggers/{workspace:str}/{name:str}/pause", "/triggers/{workspace:str}/{name:str}/resume"],
        include_in_schema=False,
        status_code=303,
    )
    async def pause_or_resume(
        request: Request[Any, Any, Any], workspace: str, name: str, data: Annotated[Form, FORM]
    ) -> Redirect:
        scope, csrf = await signed_in(res, request)
        check_csrf(data.csrf, csrf)
        scope.check(workspace)
        async with database(res) as connection:
            if request.url.path.endswith("/pause"):
                await pause_trigger(connection, workspace, name)
            else:
                await resume_trigger(connection, workspace, name)
        return Redirect("/console/triggers", status_code=303)

    @post("/executions/{execution_id:str}/replay", include_in_schema=False, status_code=303)
    async def replay_execution(
        request: Request[Any, Any, Any], execution_id: str, data: Annotated[Form, FORM]
    ) -> Redirect:
        scope, csrf = await signed_in(res, request)
        check_csrf(data.csrf, csrf)
        replayed = await replay(res, scope, execution_id)
        return Redirect(
            f"/console/executions/{replayed.execution_id}?replayed_from={execution_id}", status_code=303
        )

    @post("/dead-letters/{execution_id:str}/replay", include_in_schema=False, status_code=303)
    async def replay_dead(
        request: Request[Any, Any, Any], execution_id: str, data: Annotated[Form, FORM]
    ) -> Redirect:
        scope, csrf = await signed_in(res, request)
        check_csrf(data.csrf, csrf)
        await replay_letters(res, scope, [execution_id])
        return Redirect("/console/dead-letters", status_code=303)

    return [login, logout, new_key, pause_or_resume, replay_execution, replay_dead]
