"""Every refusal as an RFC 9457 problem document with a stable `type`; never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from ingress import errors
from shared.broker.publishers import NotRouted, QueueFull, Unconfirmed
from shared.db.keys import KeyRejected
from shared.db.runlog import BadFilter
from shared.db.secrets import SecretsNotConfigured
from shared.db.triggers import TriggerExists
from shared.errors import BrokerUnavailable, DatabaseUnavailable, HooklineError, NotFound, SpecError
from shared.ops.deadletters import NotReplayable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# Every hook answer carries these, whatever its type: a workflow (a tenant) chooses the body
# and Content-Type of hook answers, which share the console's origin. `sandbox` gives such a
# page an opaque origin with no script; nosniff keeps a browser from guessing HTML.
SANDBOX_HEADERS: dict[str, str] = {
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "X-Content-Type-Options": "nosniff",
}
_encode = msgspec.json.Encoder().encode

# Error class -> (status, title). The first match in MRO order wins.
STATUS: dict[type[HooklineError], tuple[int, str]] = {
    errors.TriggerNotFound: (404, "Trigger not found"),
    NotFound: (404, "Not found"),
    errors.MethodNotAllowed: (405, "Method not allowed"),
    errors.Unauthorized: (401, "Unauthorized"),
    errors.AdminUnauthorized: (401, "Unauthorized"),
    errors.Forbidden: (403, "Forbidden"),
    TriggerExists: (409, "Trigger exists"),
    NotReplayable: (409, "Not replayable"),
    SpecError: (400, "Invalid definition"),
    KeyRejected: (400, "Key rejected"),
    BadFilter: (400, "Bad filter"),
    errors.InvalidParameter: (400, "Invalid query parameter"),
    errors.MalformedBody: (400, "Malformed body"),
    errors.BadRequest: (400, "Bad request"),
    errors.BodyTooLarge: (413, "Body too large"),
    errors.UnsupportedMediaType: (415, "Unsupported media type"),
    errors.IdempotencyKeyReused: (422, "Idempotency key reused"),
    errors.ReplyTimeout: (504, "The workflow did not answer in time"),
    errors.ReplyLost: (503, "The answer was lost"),
    errors.AnswerInvalid: (502, "The trigger's answer cannot be sent"),
    errors.TriggerMisconfigured: (503, "Trigger misconfigured"),
    errors.TriggerPaused: (503, "Trigger paused"),
    errors.RateLimited: (429, "Too many requests"),
    QueueFull: (503, "Too much work queued"),
    NotRouted: (503, "Trigger not ready"),
    BrokerUnavailable: (503, "Broker unavailable"),
    DatabaseUnavailable: (503, "Database unavailable"),
    SecretsNotConfigured: (503, "Secrets not configured"),
}


def problem_type(slug: str) -> str:
    """The stable `type` URI of a problem (documented at that path on the ingress)."""
    return f"/problems/{slug}"


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[bytes]:
    """A problem document response."""
    body = {"type": problem_type(slug), "title": title, "status": status, "detail": detail, **extra}
    headers = {**headers, **SANDBOX_HEADERS} if headers else SANDBOX_HEADERS
    return Response(_encode(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _status_title(exc: HooklineError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500, "Internal error"


def status_of(exc: HooklineError) -> int:
    """The HTTP status an error is answered with."""
    return _status_title(exc)[0]


def from_error(exc: HooklineError, retry_after: int) -> Response[bytes]:
    """The answer for one of our errors."""
    status, title = _status_title(exc)
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, errors.MethodNotAllowed):
        headers["Allow"] = exc.allow
    elif isinstance(exc, errors.Unauthorized) and exc.challenge:
        headers["WWW-Authenticate"] = exc.challenge
    elif isinstance(exc, errors.InvalidParameter):
        extra["parameter"] = exc.parameter
    elif isinstance(exc, errors.ReplyTimeout | errors.AnswerInvalid):
        extra = {"execution_id": exc.execution_id, "status_url": exc.status_url}
        headers["Location"] = exc.status_url
    elif isinstance(exc, Unconfirmed) and exc.status_url is not None:
        extra = {"execution_id": exc.execution_id, "status_url": exc.status_url}
    elif isinstance(exc, errors.ReplyLost):
        extra["execution_id"] = exc.execution_id
        if exc.status_url is not None:
            extra["status_url"] = exc.status_url
            headers["Location"] = exc.status_url
    if isinstance(exc, errors.RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    elif status == 503:
        headers["Retry-After"] = str(retry_after)
    return problem_response(status, exc.problem_type, title, str(exc), headers, **extra)


def make_handlers(retry_after: int) -> dict[type[Exception] | int, Any]:
    """Litestar exception handlers: ours, the framework's, and anything unexpected."""

    def hookline_error(_: Request[Any, Any, Any], exc: HooklineError) -> Response[bytes]:
        return from_error(exc, retry_after)

    def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
        slug = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}.get(
            exc.status_code, "bad-request" if exc.status_code < 500 else "internal-error"
        )
        headers = dict(exc.headers or {})
        return problem_response(exc.status_code, slug, _title(exc.status_code), str(exc.detail), headers)

    def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal-error", "Internal error", "an unexpected error occurred")

    return {HooklineError: hookline_error, HTTPException: http_error, Exception: unexpected}


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
