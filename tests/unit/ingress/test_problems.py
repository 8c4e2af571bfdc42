"""Every refusal as an RFC 9457 problem document: its status, type, title and the headers
the caller needs (Allow, WWW-Authenticate, Retry-After, Location), without a server."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar.exceptions import HTTPException

from ingress import errors
from ingress.problems import PROBLEM_JSON, SANDBOX_HEADERS, from_error, make_handlers, status_of
from shared.broker.publishers import NotRouted, QueueFull
from shared.errors import BrokerUnavailable, DatabaseUnavailable, HooklineError, NotFound, SpecError


def document(response: Any) -> dict[str, Any]:
    assert response.media_type == PROBLEM_JSON
    body: dict[str, Any] = msgspec.json.decode(response.content)
    assert body["status"] == response.status_code
    return body


@pytest.mark.parametrize(
    ("error", "status", "slug", "title"),
    [
        (errors.TriggerNotFound("no such trigger"), 404, "trigger-not-found", "Trigger not found"),
        (NotFound("no such run"), 404, "not-found", "Not found"),
        (errors.Forbidden("not yours"), 403, "forbidden", "Forbidden"),
        (errors.AdminUnauthorized("token"), 401, "unauthorized", "Unauthorized"),
        (SpecError("bad spec"), 400, "spec-invalid", "Invalid definition"),
        (errors.MalformedBody("not JSON"), 400, "malformed-body", "Malformed body"),
        (errors.BodyTooLarge("too big"), 413, "body-too-large", "Body too large"),
        (errors.IdempotencyKeyReused("other body"), 422, "idempotency-key-reused", "Idempotency key reused"),
        (errors.TriggerPaused("paused"), 503, "trigger-paused", "Trigger paused"),
        (QueueFull("full"), 503, "queue-full", "Too much work queued"),
        (NotRouted("unbound"), 503, "trigger-not-ready", "Trigger not ready"),
        (BrokerUnavailable("down"), 503, "broker-unavailable", "Broker unavailable"),
        (DatabaseUnavailable("down"), 503, "database-unavailable", "Database unavailable"),
        (HooklineError("ours, unlisted"), 500, "about:blank", "Internal error"),
    ],
)
def test_each_error_has_its_status_type_and_title(
    error: HooklineError, status: int, slug: str, title: str
) -> None:
    response = from_error(error, retry_after=5)
    assert response.status_code == status_of(error) == status
    assert document(response) == {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": str(error),
    }
    for name, value in SANDBOX_HEADERS.items():
        assert response.headers[name] == value
    assert ("Retry-After" in response.headers) is (status == 503)


def test_a_wrong_method_names_the_allowed_ones() -> None:
    response = from_error(errors.MethodNotAllowed("GET", "POST, PUT"), retry_after=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST, PUT"
    assert document(response)["detail"] == "GET is not allowed here; use POST, PUT"


def test_unauthorized_carries_its_challenge_only_when_it_has_one() -> None:
    challenged = from_error(errors.Unauthorized("missing", challenge='Basic realm="hooks"'), retry_after=5)
    assert challenged.status_code == 401
    assert challenged.headers["WWW-Authenticate"] == 'Basic realm="hooks"'
    assert document(challenged)["detail"] == "missing or invalid credentials"
    assert "WWW-Authenticate" not in from_error(errors.Unauthorized("missing"), retry_after=5).headers


def test_an_invalid_parameter_is_named() -> None:
    response = from_error(errors.InvalidParameter("query parameter 'id' is required", "id"), retry_after=5)
    assert response.status_code == 400
    assert document(response)["parameter"] == "id"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.ReplyTimeout("ex1", "/hooks/w/t/executions/ex1"), 504),
        (errors.AnswerInvalid("not JSON", "ex1", "/hooks/w/t/executions/ex1"), 502),
    ],
)
def test_an_accepted_call_whose_answer_failed_points_to_its_execution(
    error: HooklineError, status: int
) -> None:
    response = from_error(error, retry_after=5)
    assert response.status_code == status
    assert response.headers["Location"] == "/hooks/w/t/executions/ex1"
    body = document(response)
    assert (body["execution_id"], body["status_url"]) == ("ex1", "/hooks/w/t/executions/ex1")


def test_a_lost_answer_names_its_execution_and_says_when_to_retry() -> None:
    response = from_error(errors.ReplyLost("ex1"), retry_after=7)
    assert response.status_code == 503
    assert document(response)["execution_id"] == "ex1"
    assert response.headers["Retry-After"] == "7"


def test_a_rate_limited_caller_is_told_its_own_wait() -> None:
    response = from_error(errors.RateLimited(12), retry_after=5)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "12"


def test_a_framework_refusal_and_an_unexpected_error_are_problems_too() -> None:
    handlers = make_handlers(retry_after=5)
    response = handlers[HTTPException](
        None, HTTPException(status_code=405, detail="nope", headers={"Allow": "GET"})
    )
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert document(response)["type"] == "/problems/method-not-allowed"
    teapot = document(handlers[HTTPException](None, HTTPException(status_code=418, detail="x")))
    assert (teapot["type"], teapot["title"]) == ("/problems/bad-request", "I'm a Teapot")
    odd = document(handlers[HTTPException](None, HTTPException(status_code=599, detail="x")))
    assert (odd["type"], odd["title"]) == ("/problems/internal-error", "Error")

    class Request:
        method = "GET"

        class url:
            path = "/x"

    crashed = handlers[Exception](Request(), RuntimeError("secret detail"))
    assert crashed.status_code == 500
    assert document(crashed) == {
        "type": "/problems/internal-error",
        "title": "Internal error",
        "status": 500,
        "detail": "an unexpected error occurred",
    }
