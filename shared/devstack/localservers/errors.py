"""The one error a private server raises; its message says what to do about it."""

from __future__ import annotations

from shared.errors import HooklineError


class LocalServerError(HooklineError, RuntimeError):
    """Raised when a private RabbitMQ or PostgreSQL cannot be installed, started or stopped."""

    problem_type = "local-server-failed"
