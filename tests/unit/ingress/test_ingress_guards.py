"""The /api token and the console session are checked by guards, before a body is read.

The app is called in-process over ASGI with no lifespan (no database, no broker): a caller
without a valid token or session is answered from the headers alone, and `receive` (the
body) is never awaited.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
import pytest
from litestar import Litestar

from ingress.app import create_app
from shared.settings import Settings

# Litestar 2.25 warns of the path, query and body parameters it infers (as before the controllers);
# dependencies are named explicitly (ingress/dependencies.py), so no warning of those is let through.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*declared using deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:.*Reserved kwarg 'data' declared without a body marker:DeprecationWarning"
    ),
]
ADMIN = "test-admin-token-0123456789"
FOUR_MIB = 4 * 1_048_576  # the cap of /api and /console bodies


@functools.cache
def _app() -> Litestar:
    return create_app(Settings(database_url="postgresql://x/y", amqp_url="amqp://x", admin_token=ADMIN))


class Answer(msgspec.Struct):
    status: int
    headers: dict[str, str]
    body: bytes
    body_read: bool


async def call(method: str, path: str, length: int, headers: dict[str, str] | None = None) -> Answer:
    """One request whose body (`length` bytes announced) is handed over only if asked for."""
    app = _app()
    asked: list[bool] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        asked.append(True)
        return {"type": "http.request", "body": b"{" * length, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    announced = {"content-length": str(length), "content-type": "application/json", **(headers or {})}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"ingress.test"), *((k.encode(), v.encode()) for k, v in announced.items())],
        "client": ("127.0.0.1", 50000),
        "server": ("ingress.test", 80),
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(
        status=start["status"],
        headers={k.decode(): v.decode() for k, v in start["headers"]},
        body=body,
        body_read=bool(asked),
    )


API_WRITES = [
    ("POST", "/api/workspaces"),
    ("POST", "/api/workspaces/shop/triggers"),
    ("PUT", "/api/workspaces/shop/triggers/orders"),
    ("PUT", "/api/workspaces/shop/secrets/erp"),
    ("POST", "/api/workspaces/shop/keys"),
    ("POST", "/api/tokens"),
    ("POST", "/api/dead-letters/replay"),
]


async def test_an_api_call_without_a_token_is_refused_before_its_body_is_read() -> None:
    for method, path in API_WRITES:
        answer = await call(method, path, FOUR_MIB)
        assert (method, path, answer.status, answer.body_read) == (method, path, 401, False)
        assert answer.headers["content-type"] == "application/problem+json"
        assert msgspec.json.decode(answer.body) == {
            "type": "/problems/unauthorized",
            "title": "Unauthorized",
            "status": 401,
            "detail": "a management token is required (Authorization: Bearer ...)",
        }


async def test_an_api_call_with_a_token_not_ours_is_refused_before_its_body_is_read() -> None:
    for scheme in ("Bearer not-the-admin-token", "Basic " + ADMIN, "Bearer " + ADMIN[:-1]):
        for method, path in API_WRITES:
            answer = await call(method, path, FOUR_MIB, {"authorization": scheme})
            assert (path, answer.status, answer.body_read) == (path, 401, False)
            detail = msgspec.json.decode(answer.body)["detail"]
            assert detail in {
                "this token is not valid (revoked, or never issued)",
                "a management token is required (Authorization: Bearer ...)",
            }


async def test_an_admin_call_over_the_cap_is_refused_unread() -> None:
    # Past the guard, the body cap holds as before: announced too large, refused without reading.
    answer = await call(
        "POST", "/api/workspaces/shop/triggers", FOUR_MIB + 1, {"authorization": "Bearer " + ADMIN}
    )
    assert (answer.status, answer.body_read) == (413, False)


CONSOLE_FORMS = [
    "/console/triggers/shop/orders/keys",
    "/console/triggers/shop/orders/pause",
    "/console/triggers/shop/orders/resume",
    "/console/executions/0190f000-0000-7000-8000-000000000000/replay",
    "/console/dead-letters/0190f000-0000-7000-8000-000000000000/replay",
]


async def test_a_console_form_without_a_session_goes_to_sign_in_before_its_body_is_read() -> None:
    for cookie in ({}, {"cookie": "hookline_console=" + "x" * 101}, {"cookie": "hookline_console="}):
        for path in CONSOLE_FORMS:
            answer = await call("POST", path, FOUR_MIB, cookie)
            assert (path, answer.status, answer.headers.get("location"), answer.body_read) == (
                path,
                302,
                "/console/login",
                False,
            )


async def test_the_sign_in_form_is_bounded_to_what_a_token_needs() -> None:
    # The one body a stranger can send the console: a token and a CSRF value, far below 16 KiB.
    answer = await call(
        "POST", "/console/login", 16_385, {"content-type": "application/x-www-form-urlencoded"}
    )
    assert (answer.status, answer.body_read) == (413, False)
