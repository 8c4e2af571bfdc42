"""Workflow steps as msgspec Structs, one per kind, tagged by `kind` (the loader adds it).

Strings may hold `{{ expression }}` templates wherever a value is computed at run time;
they are compiled when a file is applied (shared/spec/checks.py) and again by the worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal

import msgspec

from shared.spec.base import Name, Spec
from shared.spec.connections import HeaderName, check_idempotency_header
from shared.spec.types import Duration

StepId = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="a letter or '_', then letters, digits or '_' (usable as steps.<id>)",
    ),
]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
StatusClass = Literal["1xx", "2xx", "3xx", "4xx", "5xx"]
StatusCode = Annotated[int, msgspec.Meta(ge=100, le=599)]
_CLASSES = frozenset(("1xx", "2xx", "3xx", "4xx", "5xx"))
_READS = frozenset({"select", "with", "values", "table", "show", "explain"})
_WRITING = re.compile(
    r"\b(insert|update|delete|merge|into|nextval|setval|call|copy|truncate|create|drop|alter|grant"
    r"|revoke|lock|vacuum|refresh|notify|listen)\b",
    re.IGNORECASE,
)


RetryOn = StatusCode | StatusClass | Literal["timeout", "connection"]


class StepRetry(Spec, frozen=True):
    """Tries of one step inside its run (before the trigger's retry of the whole run): again
    after a failure listed in `on` (an answer's status or class, a timeout, a connection error),
    waiting `backoff`, doubling up to `max_backoff`. The workflow's timeout still bounds them."""

    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    backoff: Duration = Duration(1)
    max_backoff: Duration = Duration(30)
    on: list[RetryOn] = msgspec.field(default_factory=lambda: ["5xx", "timeout", "connection"])

    def __post_init__(self) -> None:
        if not self.on:
            raise ValueError("`on` must list at least one failure to retry")
        if self.max_backoff < self.backoff:
            raise ValueError("`max_backoff` must be at least `backoff`")


class StepBase(Spec, tag_field="kind", frozen=True, kw_only=True):
    """Fields every step has."""

    id: StepId
    retry: StepRetry | None = None  # http, sql and python steps only


class MapStep(StepBase, tag="map", frozen=True):
    """Build a value from expressions; it becomes the step's output."""

    map: Any


class HttpCall(Spec, frozen=True):
    """One HTTP request: to `url`, or to `path` under a named http connection's base URL."""

    method: HttpMethod = "GET"
    url: str | None = None
    connection: Name | None = None
    path: str = ""
    headers: dict[str, str] = {}
    query: dict[str, Any] = {}
    json: Any = None
    body: str | None = None
    timeout: Duration = Duration(10)
    expect: list[StatusCode | StatusClass] = msgspec.field(default_factory=lambda: ["2xx"])
    # The header carrying `<execution id>:<step id>`; unset: the connection's (by default
    # Idempotency-Key); null: none.
    idempotency_header: HeaderName | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        if (self.url is None) == (self.connection is None):
            raise ValueError("give either `url` or `connection` (with `path`)")
        if self.path and self.connection is None:
            raise ValueError("`path` goes with `connection`; with `url`, write the whole URL")
        if self.json is not None and self.body is not None:
            raise ValueError("give either `json` or `body`, not both")
        if not self.expect:
            raise ValueError("`expect` must list at least one status")
        if self.idempotency_header is not msgspec.UNSET:
            check_idempotency_header(self.idempotency_header)
        _check_timeout(self.timeout)


class HttpStep(StepBase, tag="http", frozen=True):
    """Call another system; output {status, headers, body}; a status outside `expect` fails."""

    http: HttpCall


class SqlQuery(Spec, frozen=True):
    """A parameterised query on a named postgres connection: values go in `params` as $1..$n."""

    connection: Name
    query: Annotated[str, msgspec.Meta(min_length=1)]
    params: list[Any] = []
    timeout: Duration = Duration(10)
    max_rows: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    # Whether the query changes the database (then a retry reuses its checkpointed rows);
    # unset: it does unless it is a plain read (see `writes`).
    effects: bool | None = None

    @property
    def writes(self) -> bool:
        """`effects`, or else whether the query may write: anything but a select (values,
        table, show, explain) naming no writing keyword. A false positive costs one write."""
        if self.effects is not None:
            return self.effects
        words = self.query.lstrip(" \t\r\n(").split(None, 1)
        first = words[0].lower() if words else ""
        return first not in _READS or _WRITING.search(self.query) is not None

    def __post_init__(self) -> None:
        if "{{" in self.query:
            # Values spliced into SQL text are an injection; bind values cannot be.
            raise ValueError(
                "`query` cannot hold expressions: write $1, $2, ... and put the values in `params`"
            )
        _check_timeout(self.timeout)


class SqlStep(StepBase, tag="sql", frozen=True):
    """Run a query; its rows are the output, a list of objects."""

    sql: SqlQuery


class Branches(Spec, frozen=True):
    """`if` an expression is true (JMESPath truth: not false, null, "", [] or {}), `then`, else `else`."""

    if_: str = msgspec.field(name="if")
    then: list[Step] = []
    else_: list[Step] = msgspec.field(name="else", default_factory=list)


class ConditionStep(StepBase, tag="condition", frozen=True):
    """Branch: the chosen list of steps runs next; the output says which was chosen."""

    condition: Branches


class RespondSpec(Spec, frozen=True):
    """What a `respond` step answers: status, headers and body (expressions allowed)."""

    status: int | str = 200
    headers: dict[str, str] = {}
    body: Any = None
    # Answer the caller at once and go on with the next steps (a run answers once).
    continue_: bool = msgspec.field(name="continue", default=False)


class RespondStep(StepBase, tag="respond", frozen=True):
    """Set the answer to a request-response call and end the run (or, `continue`, go on)."""

    respond: RespondSpec


class PythonCall(Spec, frozen=True):
    """A step class an installed package registers under the `hookline.steps` entry points."""

    step: Name
    config: dict[str, Any] = {}
    input: Any = None
    timeout: Duration = Duration(30)
    # Whether it changes something outside the run; unset: as its class declares (`effects`).
    effects: bool | None = None

    def __post_init__(self) -> None:
        _check_timeout(self.timeout)


class PythonStep(StepBase, tag="python", frozen=True):
    """Run a registered step class with its (validated) config on the rendered `input`."""

    python: PythonCall


Step = MapStep | HttpStep | SqlStep | ConditionStep | RespondStep | PythonStep


def status_listed(status: int, items: Sequence[int | str]) -> bool:
    """Whether `items` (`expect`, `retry.on`) lists `status`: by code, or by class (`5xx`)."""
    return any(
        status == item if isinstance(item, int) else item in _CLASSES and status // 100 == int(item[0])
        for item in items
    )


def walk_steps(steps: list[Step]) -> Iterator[Step]:
    """Every step of a workflow, those inside condition branches too, in file order."""
    for step in steps:
        yield step
        if isinstance(step, ConditionStep):
            yield from walk_steps(step.condition.then)
            yield from walk_steps(step.condition.else_)


def _check_timeout(timeout: Duration) -> None:
    if timeout <= 0:
        raise ValueError("`timeout` must be more than 0")
