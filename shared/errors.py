"""The error tree: one root, a stable problem type per class, no HTTP here."""

from __future__ import annotations


class HooklineError(Exception):
    """Raised when hookline refuses or cannot do something; the message is for people."""

    problem_type = "about:blank"


class SpecError(HooklineError, ValueError):
    """Raised when a trigger file is not valid; the message names file, trigger, step, field."""

    problem_type = "spec-invalid"


class ConfigError(HooklineError, ValueError):
    """Raised when settings from the environment are missing or malformed."""

    problem_type = "config-invalid"


class NotFound(HooklineError, LookupError):
    """Raised when a workspace, trigger, key or execution does not exist."""

    problem_type = "not-found"


class BrokerUnavailable(HooklineError):
    """Raised when RabbitMQ cannot be reached or did not confirm a publish in time."""

    problem_type = "broker-unavailable"


class DatabaseUnavailable(HooklineError):
    """Raised when PostgreSQL cannot be reached."""

    problem_type = "database-unavailable"


class RecordRefused(HooklineError):
    """Raised when the database refuses an execution record (not an outage); a minimal
    failed record stands in for it and the message is dead-lettered."""

    problem_type = "record-refused"


class WorkflowError(HooklineError):
    """Raised when a workflow step fails; the message names the step."""

    problem_type = "workflow-failed"


class ExpressionError(WorkflowError, ValueError):
    """Raised when an expression cannot be compiled or evaluated; names the expression."""

    problem_type = "expression-invalid"
