"""The trigger file as msgspec Structs: decoding a document is validating it.

Names follow ../DESIGN.md "The trigger file". Steps are written with their kind as the key
(`respond: {...}`); the loader rewrites each to `{"kind": "respond", ...}` before decoding.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from shared.spec.base import Name, Spec
from shared.spec.connections import Connection
from shared.spec.schedule import Schedule
from shared.spec.steps import Step, walk_steps
from shared.spec.types import Duration
from shared.wire.ordering import compile_key

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_REFERENCE = re.compile(r"^\$\{(?:env|secret):[A-Za-z_][A-Za-z0-9_]*\}$")


# --- authentication -------------------------------------------------------------------


class NoAuth(Spec, tag="none", tag_field="type", frozen=True):
    """Anyone may call the trigger (must be chosen explicitly)."""


class ApiKeyAuth(Spec, tag="api_key", tag_field="type", frozen=True):
    """Callers send one of the trigger's API keys in `X-API-Key` or `Authorization: Bearer`."""


class BasicAuth(Spec, tag="basic", tag_field="type", frozen=True):
    """HTTP Basic: a username and a password (literal, `${env:NAME}` or `${secret:NAME}`), stored hashed."""

    username: Annotated[str, msgspec.Meta(min_length=1)]
    password: str | None = None
    password_hash: str | None = None
    # The `${env:NAME}` or `${secret:NAME}` the password was written as, kept by hookline at
    # apply (never given), so `triggers try` can send the configured credentials.
    password_ref: str | None = None
    realm: str = "hookline"

    def __post_init__(self) -> None:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError("basic auth needs a `password`")
        if ":" in self.username:
            raise ValueError("a Basic username cannot contain ':'")


class HmacAuth(Spec, tag="hmac", tag_field="type", frozen=True):
    """A signature of the raw body with a shared secret, as GitHub, Stripe and others send."""

    secret: str | list[str]
    preset: Literal["github", "stripe", "shopify", "slack", "standard-webhooks"] | None = None
    header: str | None = None
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = None
    signed_content: str | None = None
    tolerance: Duration = Duration(300)

    def __post_init__(self) -> None:
        if self.preset is None and self.header is None:
            raise ValueError("hmac needs a `preset` or a `header`")
        secrets = [self.secret] if isinstance(self.secret, str) else self.secret
        if not secrets:
            raise ValueError("hmac needs at least one secret")
        for secret in secrets:
            if not _REFERENCE.match(secret):
                raise ValueError(
                    "an hmac secret must be a reference to a secret of the workspace or an environment "
                    'variable, such as "${secret:GITHUB_SECRET}", so that it is never stored in plain text'
                )


Auth = NoAuth | ApiKeyAuth | BasicAuth | HmacAuth


# --- request handling -----------------------------------------------------------------


class QueryParam(Spec, frozen=True):
    """A declared query parameter: its type, whether it is required, its default.

    `object` is written with brackets (`filter[status]=paid`) and declares its `properties`;
    `array` is `ids[]=1&ids[]=2` (or `ids=1&ids=2`) and declares its `items`. A trigger that
    declares one reads its whole query string as `qs` does (ingress/parse.py).
    """

    type: Literal["string", "integer", "number", "boolean", "object", "array"] = "string"
    required: bool = False
    default: str | int | float | bool | None = None
    properties: dict[str, QueryParam] = {}
    items: QueryParam | None = None

    def __post_init__(self) -> None:
        nested = self.type in ("object", "array")
        if nested and self.default is not None:
            raise ValueError(f"an {self.type} query parameter cannot have a default")
        if self.properties and self.type != "object":
            raise ValueError("`properties` belong to a query parameter of type object")
        if self.items is not None and self.type != "array":
            raise ValueError("`items` belong to a query parameter of type array")
        if self.type == "object" and not self.properties:
            raise ValueError("a query parameter of type object declares its `properties`")
        for name, param in self.properties.items():
            _check_param(name, param)
        if self.items is not None:
            if self.items.type == "array":
                raise ValueError("`items` cannot be arrays themselves (write an object of arrays)")
            _check_param("items", self.items)

    @property
    def nested(self) -> bool:
        return self.type in ("object", "array")


def _check_param(name: str, param: QueryParam) -> None:
    if param.required and param.default is not None:
        raise ValueError(f"query parameter {name!r}: a required parameter cannot have a default")
    if param.default is not None and not _default_fits(param):
        raise ValueError(f"query parameter {name!r}: default {param.default!r} is not a {param.type}")


def _default_fits(param: QueryParam) -> bool:
    value = param.default
    if param.type == "boolean":
        return isinstance(value, bool)
    if param.type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if param.type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


class BodyRules(Spec, frozen=True):
    """Limits on the request body."""

    max_bytes: Annotated[int, msgspec.Meta(gt=0)] = 1_048_576
    content_types: list[str] | None = None


class Idempotency(Spec, frozen=True):
    """A repeated call with the same key inside the window does not run again."""

    header: str = "Idempotency-Key"
    window: Duration = Duration(86400)


class RateLimit(Spec, frozen=True):
    """Requests per API key: `per_key` every `per`, with bursts up to `burst`."""

    per_key: Annotated[int, msgspec.Meta(gt=0)]
    per: Duration = Duration(1)
    burst: Annotated[int, msgspec.Meta(gt=0)] | None = None


class Retry(Spec, frozen=True):
    """How often a failed run is tried again, and what happens when attempts run out."""

    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    backoff: Duration = Duration(1)
    max_backoff: Duration = Duration(300)
    on_exhausted: Literal["skip", "stop"] = "skip"


class OrderingKey(Spec, frozen=True):
    """Order kept per key (an expression over the request), spread over N partitions."""

    key: str
    partitions: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4

    def __post_init__(self) -> None:
        compile_key(self.key)  # ExpressionError is a ValueError: reported with the field path


class KeyedConcurrency(Spec, frozen=True):
    """At most `limit` runs at once per value of `key` (an expression over the request)."""

    key: str
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)]

    def __post_init__(self) -> None:
        compile_key(self.key)  # ExpressionError is a ValueError: reported with the field path


class Throttle(Spec, frozen=True):
    """Runs start at most `rate` every `per`, `burst` at once after a quiet spell; the rest
    wait in the trigger's queue (callers are not refused for it)."""

    rate: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    per: Duration = Duration(1)
    burst: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None

    def __post_init__(self) -> None:
        if self.per <= 0:
            raise ValueError("`per` must be more than 0")


class Response(Spec, frozen=True):
    """The answer to an async call (expressions may use `execution` and `request`)."""

    status: Annotated[int, msgspec.Meta(ge=200, le=299)] = 202
    headers: dict[str, str] = {}
    body: Any = None


# --- trigger and workspace ------------------------------------------------------------


class Trigger(Spec, frozen=True):
    """One webhook endpoint, /hooks/{workspace}/{name}, and its workflow."""

    name: Name
    auth: Auth
    # Empty only with a `schedule`: a trigger that runs by its clock alone (calls get 405).
    methods: list[Method] = msgspec.field(default_factory=lambda: ["POST"])
    mode: Literal["async", "request_response"] = "async"
    timeout: Duration = Duration(30)
    on_timeout: Literal["error", "accept"] = "error"
    ordered: bool | OrderingKey = False
    query: dict[str, QueryParam] = {}
    extra_query: Literal["pass", "reject"] = "pass"
    headers: list[str] = []
    body: BodyRules = BodyRules()
    idempotency: Idempotency | None = Idempotency()
    rate_limit: RateLimit | None = None
    retry: Retry = Retry()
    response: Response = Response()
    keep_rejected_bodies: bool = False
    workflow: list[Step] = []
    # Steps run once when a run ends for good failed (dead, or failed with its caller
    # answered), with `error` in scope; they cannot answer the caller.
    on_error: list[Step] = []
    workflow_timeout: Duration = Duration(60)
    retention: Duration | None = None  # how long its executions are kept; None: HOOKLINE_RETENTION_DAYS
    # Calls an unordered trigger's own queue holds; past it callers get 503 (None: the
    # deployment's HOOKLINE_TRIGGER_QUEUE_MAX_LENGTH). Fixed when the queue is declared.
    max_queued: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    # Flow control across all workers (worker/flow.py): runs at once, per key, or per second.
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] | KeyedConcurrency | None = None
    throttle: Throttle | None = None
    # Runs by itself too: one invocation per tick, published by the leading dispatcher.
    schedule: Schedule | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.retention is not None and self.retention < 60:
            raise ValueError("`retention` must be at least 1m")
        if not self.methods and self.schedule is None:
            raise ValueError(
                "`methods` must list at least one method (`methods: []` is for a trigger with a `schedule`)"
            )
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("`methods` lists a method twice")
        for name, param in self.query.items():
            _check_param(name, param)
        if self.workflow_timeout <= 0:
            raise ValueError("`workflow_timeout` must be more than 0")
        if self.ordered is not False:
            for name in ("concurrency", "throttle", "max_queued"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"`{name}` applies to unordered triggers; an ordered trigger runs one at a"
                        " time per lane already"
                    )
        # Branches and on_error share one namespace.
        ids = [step.id for step in (*walk_steps(self.workflow), *walk_steps(self.on_error))]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate step id {duplicates[0]!r}")


class Workspace(Spec, frozen=True):
    """One document of a trigger file: a workspace and its triggers."""

    workspace: Name
    connections: dict[Name, Connection] = {}
    triggers: list[Trigger] = []
    description: str = ""

    def __post_init__(self) -> None:
        names = [t.name for t in self.triggers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate trigger name {duplicates[0]!r}")
