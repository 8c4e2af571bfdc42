"""Why the ingress refuses a call; `problems.py` turns each into its HTTP answer."""

from __future__ import annotations

from typing import Any

from shared.errors import HooklineError


class TriggerNotFound(HooklineError, LookupError):
    """Raised when no trigger has this workspace and name."""

    problem_type = "trigger-not-found"


class MethodNotAllowed(HooklineError):
    """Raised when the trigger does not accept this HTTP method."""

    problem_type = "method-not-allowed"

    def __init__(self, method: str, allow: str) -> None:
        if allow:
            super().__init__(f"{method} is not allowed here; use {allow}")
        else:  # `methods: []`: a scheduled trigger that takes no calls
            super().__init__(f"{method} is not allowed here; this trigger runs on its schedule only")
        self.allow = allow


class Unauthorized(HooklineError):
    """Raised when credentials are missing or wrong (the detail never says which part)."""

    problem_type = "unauthorized"

    def __init__(self, reason: str, challenge: str | None = None, hint: dict[str, Any] | None = None) -> None:
        super().__init__("missing or invalid credentials")
        self.reason = reason
        self.challenge = challenge
        # For the operator's list of refused calls only (never the caller's answer): what the
        # sender can fix. Never a secret, the presented key or the expected signature.
        self.hint = hint


class BadRequest(HooklineError, ValueError):
    """Raised when the query or the body cannot be used (the message names what)."""

    problem_type = "bad-request"


class InvalidParameter(BadRequest):
    """Raised when a declared query parameter is missing or has the wrong type."""

    problem_type = "invalid-parameter"

    def __init__(self, message: str, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class MalformedBody(BadRequest):
    """Raised when a JSON body does not parse."""

    problem_type = "malformed-body"


class BodyTooLarge(HooklineError):
    """Raised when the body exceeds the trigger's limit (checked while reading)."""

    problem_type = "body-too-large"


class UnsupportedMediaType(HooklineError):
    """Raised when the content type is not one the trigger accepts."""

    problem_type = "unsupported-media-type"


class IdempotencyKeyReused(HooklineError):
    """Raised when an idempotency key comes again with another request than its first call's."""

    problem_type = "idempotency-key-reused"


class ReplyTimeout(HooklineError):
    """Raised when a request-response run did not answer within the trigger's timeout."""

    problem_type = "timeout"

    def __init__(self, execution_id: str, status_url: str) -> None:
        super().__init__("the workflow did not answer in time; it may still finish")
        self.execution_id = execution_id
        self.status_url = status_url


class AnswerInvalid(HooklineError):
    """Raised when a trigger's async `response` renders an answer that cannot be sent.

    The call was accepted and runs; the problem names its execution.
    """

    problem_type = "answer-invalid"

    def __init__(self, reason: str, execution_id: str, status_url: str) -> None:
        super().__init__(f"the trigger's response cannot be sent: {reason}")
        self.execution_id = execution_id
        self.status_url = status_url


class ReplyLost(HooklineError):
    """Raised when the connection carrying a pending reply closed before it came."""

    problem_type = "reply-lost"

    def __init__(self, execution_id: str, status_url: str | None = None) -> None:
        super().__init__("the connection to the broker was lost while waiting for the answer")
        self.execution_id = execution_id
        # Where the run's outcome can be read (it may still run): set by the hot path.
        self.status_url = status_url


class AdminUnauthorized(HooklineError):
    """Raised when the management API's token is missing or wrong."""

    problem_type = "unauthorized"


class Forbidden(HooklineError):
    """Raised when a management token may not see or do this (another workspace, admin only)."""

    problem_type = "forbidden"


class TriggerMisconfigured(HooklineError):
    """Raised when a trigger cannot serve calls (e.g. its secret's variable is not set here)."""

    problem_type = "trigger-misconfigured"


class TriggerPaused(HooklineError):
    """Raised when a paused request-response trigger is called (nobody would answer)."""

    problem_type = "trigger-paused"


class RateLimited(HooklineError):
    """Raised when a caller's key exceeds the trigger's rate limit."""

    problem_type = "rate-limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many calls; retry in {retry_after} s")
        self.retry_after = retry_after
