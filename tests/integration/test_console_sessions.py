"""Console sign-in is a server-side session: the cookie is a random id, never the token.

Finding 19 of the security review: the cookie held the bearer token itself, signing out did
not end anything, `Secure` depended on what uvicorn believed, and the sign-in form had no
CSRF value. Finding 11c: a NUL in a console path or filter answered 500.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from shared.db.pool import Connection
from shared.db.tokens import create_token, revoke_token
from tests.helpers import apply_yaml
from tests.integration.console_browser import (
    LOGIN,
    SESSION,
    csrf_of,
    get,
    post,
    session_of,
    set_cookies,
    sign_in,
)
from tests.stack import Services, free_port

ADMIN = "test-admin-token-0123456789"
TRIGGERS = """
workspace: {ws}
triggers:
  - name: orders
    auth: {{type: api_key}}
    workflow: [{{map: {{x: 1}}}}]
"""


@contextmanager
def ingress_with(stack: Services, **settings: str) -> Iterator[Services]:
    """A second ingress on the session's servers, with some settings of its own."""
    env = {**stack.env, **{f"HOOKLINE_{k.upper()}": v for k, v in settings.items()}}
    port = free_port()
    env["HOOKLINE_PORT"] = str(port)
    own = Services(env, port, stack.log_dir)
    own.start("ingress-" + "-".join(settings))
    try:
        own.wait_ready()
        yield own
    finally:
        own.stop_all()


@pytest.fixture(scope="module")
def secure_ingress(stack: Services) -> Iterator[Services]:
    with ingress_with(stack, secure_cookies="true", console_session_seconds="2") as running:
        yield running


@pytest.fixture(scope="module")
def proxied_ingress(stack: Services) -> Iterator[Services]:
    with ingress_with(stack, trusted_proxies="127.0.0.1") as running:
        yield running


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


async def test_the_console_cookie_holds_a_session_id_not_the_token(stack: Services, db: Connection) -> None:
    signed = await sign_in(stack.base_url, ADMIN)
    assert (signed.status_code, signed.headers["location"]) == (303, "/console/runs")
    session = session_of(signed)
    assert session != ADMIN
    assert ADMIN not in " ".join(signed.headers.get_list("set-cookie"))
    assert set_cookies(signed)[LOGIN]["max-age"] == "0"  # the sign-in value is used up
    row = await db.fetchrow(
        "select token_id, expires_at > now() + interval '7 hours' as long, expires_at < now() + interval '9 hours'"
        " as bounded from console_sessions where digest = $1",
        digest(session),
    )
    assert row is not None
    assert (row["token_id"], row["long"], row["bounded"]) == (None, True, True)
    assert await db.fetchval("select count(*) from console_sessions where digest = $1", digest(ADMIN)) == 0
    assert (await get(stack.base_url, "/console/runs", session)).status_code == 200
    # The token itself is no longer a cookie the console takes.
    refused = await get(stack.base_url, "/console/runs", ADMIN)
    assert (refused.status_code, refused.headers["location"]) == (302, "/console/login")


async def test_signing_out_makes_the_old_cookie_refused(stack: Services, db: Connection) -> None:
    session = session_of(await sign_in(stack.base_url, ADMIN))
    assert (await get(stack.base_url, "/console/runs", session)).status_code == 200
    out = await post(stack.base_url, "/console/logout", session, {})
    assert (out.status_code, out.headers["location"]) == (303, "/console/login")
    assert set_cookies(out)[SESSION]["max-age"] == "0"
    again = await get(stack.base_url, "/console/runs", session)  # the old cookie, kept by an attacker
    assert (again.status_code, again.headers["location"]) == (302, "/console/login")
    assert await db.fetchval("select count(*) from console_sessions where digest = $1", digest(session)) == 0


async def test_a_revoked_token_signs_its_console_sessions_out(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    token = await create_token(db, workspace, "console")
    session = session_of(await sign_in(stack.base_url, token.token))
    page = await get(stack.base_url, "/console/triggers", session)
    assert page.status_code == 200
    assert workspace in page.text
    await revoke_token(db, str(token.id))
    refused = await get(stack.base_url, "/console/triggers", session)
    assert (refused.status_code, refused.headers["location"]) == (302, "/console/login")


async def test_a_changed_admin_token_signs_its_console_sessions_out(stack: Services) -> None:
    session = session_of(await sign_in(stack.base_url, ADMIN))
    with ingress_with(stack, admin_token="another-admin-token-9876543210") as restarted:
        refused = await get(restarted.base_url, "/console/runs", session)
    assert (refused.status_code, refused.headers["location"]) == (302, "/console/login")
    assert (await get(stack.base_url, "/console/runs", session)).status_code == 200


async def test_an_expired_session_is_refused(secure_ingress: Services) -> None:
    signed = await sign_in(secure_ingress.base_url, ADMIN)
    session = session_of(signed)
    assert set_cookies(signed)[SESSION]["max-age"] == "2"
    assert (await get(secure_ingress.base_url, "/console/runs", session)).status_code == 200
    await asyncio.sleep(2.5)
    refused = await get(secure_ingress.base_url, "/console/runs", session)
    assert (refused.status_code, refused.headers["location"]) == (302, "/console/login")


async def test_sign_in_without_a_valid_csrf_value_is_refused(stack: Services) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        page = await client.get("/console/login")
        value = login_value(page)
        other = login_value(await client.get("/console/login"))  # another page: another value
        forged = [
            # another site's form: no cookie of ours, no value
            await client.post("/console/login", data={"token": ADMIN}, headers={"Cookie": ""}),
            # a value guessed or copied into a form, without the cookie it belongs to
            await client.post("/console/login", data={"token": ADMIN, "csrf": value}, headers={"Cookie": ""}),
            # the cookie, with the value of another page, or with none
            await client.post(
                "/console/login", data={"token": ADMIN, "csrf": other}, headers={"Cookie": f"{LOGIN}={value}"}
            ),
            await client.post(
                "/console/login", data={"token": ADMIN}, headers={"Cookie": f"{LOGIN}={value}"}
            ),
        ]
    for answer in forged:
        assert answer.status_code == 403
        assert SESSION not in set_cookies(answer)
        assert "The sign-in form was stale" in answer.text


def login_value(page: httpx.Response) -> str:
    """The sign-in value a page set as a cookie (a placeholder where none was set)."""
    cookie = set_cookies(page).get(LOGIN)
    return cookie.value if cookie is not None else "none-set"


async def test_console_cookies_are_secure_when_configured(secure_ingress: Services) -> None:
    async with httpx.AsyncClient(base_url=secure_ingress.base_url) as client:
        page = await client.get("/console/login")
    assert set_cookies(page)[LOGIN]["secure"]
    signed = await sign_in(secure_ingress.base_url, ADMIN)
    cookie = set_cookies(signed)[SESSION]
    assert (cookie["secure"], cookie["httponly"], cookie["samesite"], cookie["path"]) == (
        True,
        True,
        "strict",
        "/console",
    )


async def test_x_forwarded_proto_makes_cookies_secure_only_from_a_trusted_proxy(
    stack: Services, proxied_ingress: Services
) -> None:
    https = {"X-Forwarded-Proto": "https"}
    untrusted = set_cookies(await sign_in(stack.base_url, ADMIN, headers=https))[SESSION]
    trusted = set_cookies(await sign_in(proxied_ingress.base_url, ADMIN, headers=https))[SESSION]
    plain = set_cookies(await sign_in(proxied_ingress.base_url, ADMIN))[SESSION]
    assert (untrusted["secure"], trusted["secure"], plain["secure"]) == ("", True, "")


async def test_a_nul_in_console_routes_and_filters_is_a_client_error(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    session = session_of(await sign_in(stack.base_url, ADMIN))
    csrf = csrf_of(await get(stack.base_url, "/console/triggers", session))
    uuid = "0190f000-0000-7000-8000-000000000000"
    pages = [
        "/console/runs?trigger=%00",
        f"/console/runs?trigger={workspace}/%00",
        "/console/runs?status=%00",
        "/console/runs?cursor=%00",
        "/console/runs/rows?trigger=%00/orders",
        "/console/runs/rows?status=%00",
        "/console/executions/%00",
        f"/console/executions/{uuid}%00",
        "/console/triggers/%00/orders",
        f"/console/triggers/{workspace}/%00",
        f"/console/triggers/{workspace}/orders%00",
        "/console/static/%00",
        "/console/%00",
    ]
    forms = [
        "/console/triggers/%00/orders/keys",
        f"/console/triggers/{workspace}/%00/keys",
        f"/console/triggers/{workspace}/%00/pause",
        f"/console/triggers/{workspace}/%00/resume",
        "/console/executions/%00/replay",
        "/console/dead-letters/%00/replay",
    ]
    answers = {path: (await get(stack.base_url, path, session)).status_code for path in pages}
    for path in forms:
        answers[path] = (
            await post(stack.base_url, path, session, {"csrf": csrf, "label": "a\x00b"})
        ).status_code
    answers["label"] = (
        await post(
            stack.base_url,
            f"/console/triggers/{workspace}/orders/keys",
            session,
            {"csrf": csrf, "label": "a\x00b"},
        )
    ).status_code
    answers["sign-in"] = (await sign_in(stack.base_url, "hlt_\x00")).status_code
    assert {path: status for path, status in answers.items() if status >= 500} == {}
    assert answers["/console/runs?trigger=%00"] == 400  # the page says so, instead of a 500
    assert answers["label"] == 400
