"""What every step kind provides, and what a run hands to each step."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import asyncpg
import httpx

from shared.db.checkpoints import Checkpoint
from shared.errors import WorkflowError
from shared.spec.connections import IDEMPOTENCY_HEADER

# RunContext.recorded_output when a step's record keeps its output as it is.
SAME_AS_OUTPUT: Final[Any] = object()


@dataclass
class Answer:
    """A response decided by a `respond` step."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    early: bool = False  # `continue: true`: sent at once, the run goes on


# Sends an answer to the caller while the run goes on (a `respond` with `continue: true`).
AnswerNow = Callable[[Answer], Awaitable[None]]


@dataclass(frozen=True)
class HttpTarget:
    """An http connection resolved for one call: real values, and how to show them safely."""

    base_url: str
    headers: dict[str, str]
    shown_base_url: str  # as written in the file: `${env:NAME}` stays a reference
    secrets: tuple[str, ...]  # resolved secret values, scrubbed from any message
    idempotency_header: str | None = IDEMPOTENCY_HEADER  # None: the connection sends none


class Resources(Protocol):
    """What steps reach the outside through: the worker's HTTP client and named connections."""

    http: httpx.AsyncClient  # for the operator's targets: connections, an operator's written-out URL

    def guarded(self, workspace: str) -> httpx.AsyncClient:
        """The client for targets a workspace chose: every connection held to the egress policy
        (the operator's allow-list and `workspace`'s)."""
        ...

    async def http_target(self, workspace: str, name: str) -> HttpTarget:
        """The http connection `name` of `workspace`; WorkflowError if unknown or unresolvable."""
        ...

    async def postgres(self, workspace: str, name: str) -> tuple[asyncpg.Pool, tuple[str, ...]]:
        """The pool of postgres connection `name`, and its secret values (to scrub from errors)."""
        ...


@dataclass
class RunContext:
    """The data expressions see, growing as steps finish; what the steps decided for the run."""

    data: dict[str, Any]
    workspace: str = ""
    # Whether the operator wrote the trigger version (`hookline apply`, the admin token), not a
    # workspace token: only then is an http `url` written out in it called as written.
    operator_written: bool = False
    resources: Resources | None = None
    answer: Answer | None = None
    ends: bool = False  # a `respond` without `continue` ends the run
    branch: Sequence[Runnable] = ()  # a condition's chosen steps, run next
    detail: dict[str, Any] | None = None  # what a step adds to its record only (not its output)
    # What the step's record keeps instead of its output (a copy with secrets scrubbed); later
    # steps and the run still see the output itself.
    recorded_output: Any = SAME_AS_OUTPUT
    # Secret values of the connections this run used: scrubbed from every record of the run
    # (a later step may copy what a target echoed), never from what steps and the caller see.
    secrets: set[str] = field(default_factory=set)
    # Effect steps an earlier run of the execution finished, by step id (a resumed run).
    checkpointed: Mapping[str, Checkpoint] = field(default_factory=dict)
    answer_now: AnswerNow | None = None  # sends an early answer to the waiting caller
    answered_at: float | None = None  # when it did

    def record_output(self, step_id: str, output: Any) -> None:
        self.data["steps"][step_id] = {"output": output}

    def need_resources(self) -> Resources:
        if self.resources is None:
            raise WorkflowError("this step needs connections, and none were given to the run")
        return self.resources


class StepFailed(WorkflowError):
    """Raised when a step fails; `output` (e.g. an unexpected HTTP answer) is still recorded."""

    def __init__(
        self, message: str, output: Any = None, *, status: int | None = None, cause: str | None = None
    ) -> None:
        super().__init__(message)
        self.output = output
        self.status = status  # the answer's status, when an answer failed the step
        self.cause = cause  # "timeout" or "connection", when that is why (a step's `retry.on`)


class AnswerInvalid(StepFailed):
    """Raised when the answer a step decided cannot be sent (a 1xx, a header with CR or LF...)."""

    problem_type = "answer-invalid"


class Runnable(Protocol):
    """A compiled step."""

    id: str
    kind: str
    timeout: float | None  # seconds; None: only the workflow's timeout applies
    # Whether a run of it can wait for something (I/O): a step that never does cannot be
    # timed out, since a timeout is delivered only when the run waits.
    suspends: bool
    # Whether it changes something outside the run (an http POST, a writing query): its
    # output is kept as a checkpoint before the next step runs, and a retry reuses it.
    effects: bool

    async def run(self, context: RunContext) -> Any:
        """Do the step's work and return its output (recorded under steps.<id>.output)."""
        ...


def scrub_value(value: Any, secrets: Collection[str]) -> Any:
    """`value` with every secret value replaced in its strings (keys too)."""
    if not secrets:
        return value
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {scrub_value(k, secrets): scrub_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(item, secrets) for item in value]
    return value


def scrub(message: str, secrets: Collection[str]) -> str:
    """`message` with every secret value replaced, so that no error text carries one."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:  # shorter values would mangle ordinary words and prove nothing
            message = message.replace(secret, "[redacted]")
    return message
