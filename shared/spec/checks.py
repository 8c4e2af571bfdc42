"""Checks a decoded workspace must pass before anything is applied.

What msgspec cannot see from one Struct: every template compiles (syntax, names, functions),
leaves no `{{` unclosed and reads only steps that ran before it, what a `respond` or an async
`response` writes out can be sent (a final status, valid headers), a literal `http.url` is
http(s), steps name connections of the right type, python steps exist and accept their
config, secrets appear only as `${env:NAME}` in connections and auth, never naming hookline's
own settings, and (`check_egress`, for what a workspace token defines) an address written out
in `http.url` passes the egress policy. Messages read "trigger T, step S, field F: reason"; the
loader puts the file in front. Which connections exist is known only at apply, where a
workspace's other files have stored theirs (shared/spec/connection_uses.py).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from shared.errors import ExpressionError, SpecError
from shared.expressions import (
    RESPONSE_ROOTS,
    WORKFLOW_ROOTS,
    Expr,
    compile_template,
    expressions_in,
    steps_read,
)
from shared.spec.answers import body_problem, header_problem, status_problem
from shared.spec.connection_uses import connection_type
from shared.spec.connections import Connection, HttpConnection, PostgresConnection, is_credential_header
from shared.spec.egress import EgressPolicy, EgressRefused, literal_address, literal_origin
from shared.spec.model import Auth, BasicAuth, HmacAuth, Trigger, Workspace
from shared.spec.plugins import PluginConfigInvalid, configure, load_plugin
from shared.spec.secrets import ReservedSecret, check_not_reserved, referenced_names
from shared.spec.steps import (
    ConditionStep,
    HttpCall,
    HttpStep,
    MapStep,
    PythonStep,
    RespondStep,
    SqlStep,
    Step,
    walk_steps,
)

# `${env:NAME}` or `${secret:NAME}` anywhere in a string (shared/spec/secrets.py resolves them).
_REFERENCE = re.compile(r"\$\{(?:env|secret):[A-Za-z_][A-Za-z0-9_]*\}")
# What a URL holds that is filled in only when it is used: a reference, or an expression
# (closed by the first `}}`, as shared/expressions reads it).
_FILLED_LATER = re.compile(r"(\$\{(?:env|secret):[A-Za-z_][A-Za-z0-9_]*\})|\{\{.*?\}\}", re.DOTALL)
# Stand-ins while the URL's shape is checked: `0` passes as a host, a port, a user or a path,
# so `http://${env:HOST}/`, `db:${env:PORT}` and `:{{ x }}` parse; the marks tell a password
# that is exactly one reference from one written out (neither is a character a file's URL holds).
_SHAPE_STAND_IN = "0"
_REFERENCE_MARK, _EXPRESSION_MARK = "\x00", "\x01"


def check_workspace(workspace: Workspace) -> None:
    """Raise SpecError for the first problem found, in file order."""
    for name, connection in workspace.connections.items():
        _check_connection(f"connection {name}", connection)
    for trigger in workspace.triggers:
        _check_trigger(trigger, workspace.connections)


def check_egress(trigger: Trigger, policy: EgressPolicy) -> None:
    """A workspace token's trigger: an address written out in an http `url` must pass the
    egress policy (a name, or a host from an expression, is checked when it is connected to)."""
    for step in walk_steps(trigger.workflow):
        if not isinstance(step, HttpStep) or step.http.url is None:
            continue
        origin = literal_origin(step.http.url)
        address = literal_address(origin.host) if origin is not None else None
        if origin is None or address is None:
            continue
        try:
            policy.check(address, origin.port)
        except EgressRefused as exc:
            raise SpecError(
                f"trigger {trigger.name}, step {step.id}, field http.url: {exc}; http steps reach public "
                "addresses only (an operator's connection or egress allow-list opens others)"
            ) from None


def check_caps(workspace: Workspace, max_body_bytes: int) -> None:
    """Raise SpecError when a trigger allows more than the deployment does (HOOKLINE_MAX_BODY_BYTES).

    Checked where a definition is applied, with the applying process's settings: what a file
    or a tenant asks for never exceeds what the operator allows.
    """
    for trigger in workspace.triggers:
        if trigger.body.max_bytes > max_body_bytes:
            raise SpecError(
                f"trigger {trigger.name}, field body.max_bytes: {trigger.body.max_bytes} is above"
                f" this deployment's cap of {max_body_bytes} bytes"
            )


def _check_trigger(trigger: Trigger, connections: dict[str, Connection]) -> None:
    where = f"trigger {trigger.name}"
    _check_auth(where, trigger.auth)
    _templates(where, "response.headers", trigger.response.headers, RESPONSE_ROOTS)
    _templates(where, "response.body", trigger.response.body, RESPONSE_ROOTS)
    response = trigger.response
    _check_answer(where, "response", response.status, response.headers, response.body)
    known = frozenset(step.id for step in walk_steps(trigger.workflow))
    ran = _check_steps(trigger.workflow, where, connections, [], known)
    # on_error steps may read any workflow step (those that did not run read as null).
    handlers = frozenset(step.id for step in walk_steps(trigger.on_error))
    _check_steps(trigger.on_error, f"{where}, on_error", connections, ran, known | handlers)
    for step in walk_steps(trigger.on_error):
        if isinstance(step, RespondStep):
            raise SpecError(f"{where}, on_error, step {step.id}: on_error steps cannot answer the caller")


def _check_auth(where: str, auth: Auth) -> None:
    if isinstance(auth, BasicAuth) and auth.password_hash is not None:
        # Stored triggers hold the hash hookline made (shared/spec/secrets.py `seal`); one
        # from a file or the API would choose scrypt's cost for every guess at the ingress.
        raise SpecError(
            f"{where}, field auth.password_hash: cannot be given; write `password` "
            "(literal or ${env:NAME}) and hookline stores its hash"
        )
    if isinstance(auth, BasicAuth) and auth.password_ref is not None:
        raise SpecError(
            f"{where}, field auth.password_ref: cannot be given; hookline keeps it from `password`"
        )
    if isinstance(auth, BasicAuth) and auth.password is not None:
        _not_reserved(where, "auth.password", auth.password)
    elif isinstance(auth, HmacAuth) and isinstance(auth.secret, str):
        _not_reserved(where, "auth.secret", auth.secret)
    elif isinstance(auth, HmacAuth):
        for index, secret in enumerate(auth.secret):
            _not_reserved(where, f"auth.secret[{index}]", secret)


# What has run when a step starts (ids in order), and every step id of the workflow.
_Order = tuple[list[str], frozenset[str]]


def _check_steps(
    steps: list[Step], where: str, connections: dict[str, Connection], ran: list[str], known: frozenset[str]
) -> list[str]:
    """Check steps that start after `ran`; the ids that may have run once they are done."""
    ran = list(ran)
    for before, step in zip([None, *steps], steps, strict=False):
        here = f"{where}, step {step.id}"
        if isinstance(before, RespondStep) and not before.respond.continue_:
            raise SpecError(
                f"{here}: comes after step {before.id} (respond), which ends the run; it would never run"
            )
        for field, value in _template_fields(step):
            _templates(here, field, value, WORKFLOW_ROOTS, (ran, known))
        _check_step(here, step, connections)
        if isinstance(step, ConditionStep):
            # Either branch reads what ran before the condition, the condition, and its own
            # earlier steps; what follows the condition may read either branch's steps.
            inside = [*ran, step.id]
            then = _check_steps(step.condition.then, f"{here}, then", connections, inside, known)
            else_ = _check_steps(step.condition.else_, f"{here}, else", connections, inside, known)
            ran = [*inside, *then[len(inside) :], *else_[len(inside) :]]
        else:
            ran.append(step.id)
    return ran


def _check_step(here: str, step: Step, connections: dict[str, Connection]) -> None:
    """What one step's kind needs beyond its templates."""
    if step.retry is not None and not isinstance(step, HttpStep | SqlStep | PythonStep):
        raise SpecError(f"{here}, field retry: only http, sql and python steps can be retried")
    if isinstance(step, HttpStep):
        _check_http(here, step.http, connections)
    elif isinstance(step, SqlStep):
        connection_type(here, "sql", step.sql.connection, PostgresConnection, connections)
    elif isinstance(step, PythonStep):
        _check_python(here, step)
    elif isinstance(step, RespondStep):
        r = step.respond
        _check_answer(here, "respond", r.status, r.headers, r.body)
    elif isinstance(step, ConditionStep):
        _check_condition(here, step)


def _check_condition(here: str, step: ConditionStep) -> None:
    # Templates were compiled already; `if` must be one expression, not text around some.
    if not isinstance(compile_template(step.condition.if_.strip()), Expr):
        raise SpecError(f"{here}, field condition.if: must be one expression, such as {{{{ x == `1` }}}}")


def _check_http(here: str, call: HttpCall, connections: dict[str, Connection]) -> None:
    if call.url is not None:
        _check_url(here, call.url)
        if _literal_password(_split(here, "http.url", call.url)):
            raise SpecError(
                f"{here}, field http.url: a password in a URL is a secret; "
                "use an http connection, whose headers can hold ${env:NAME} references"
            )
    if call.connection is not None:
        connection_type(here, "http", call.connection, HttpConnection, connections)


def _check_url(here: str, url: str) -> None:
    """A URL's scheme, where the file writes it: before any expression."""
    start = url.split("{{", 1)[0].lower()
    computed = "{{" in url
    if computed and not start:
        return  # the whole start is computed at run time
    if start.startswith(("http://", "https://")):
        return
    if computed and ("http://".startswith(start) or "https://".startswith(start)):
        return  # `http{{ s }}://...`
    raise SpecError(f"{here}, field http.url: must start with http:// or https://")


def _check_answer(here: str, field: str, status: int | str, headers: dict[str, str], body: Any) -> None:
    """What an answer writes out must be sendable (shared/spec/answers.py); what an expression
    computes is checked again when it is rendered."""
    code = _literal_status(here, f"{field}.status", status)
    if code is not None and (problem := body_problem(code, body)) is not None:
        raise SpecError(f"{here}, field {field}.body: {problem}")
    for name, value in headers.items():
        literal = compile_template(value)
        problem = header_problem(name, literal if isinstance(literal, str) else None)
        if problem is not None:
            raise SpecError(f"{here}, field {field}.headers.{name}: {problem}")


def _literal_status(here: str, field: str, status: int | str) -> int | None:
    """A status written out, which must be a final one; None for one computed by an expression."""
    code: int | None
    if isinstance(status, str):
        if not isinstance(compile_template(status), str):
            return None
        try:
            code = int(status)
        except ValueError:
            code = None
    else:
        code = status
    if code is None or status_problem(code) is not None:
        raise SpecError(
            f"{here}, field {field}: {status!r} is not a final HTTP status code (an integer from 200 to 599)"
        )
    return code


def _template_fields(step: Step) -> list[tuple[str, Any]]:
    """(field, value) of every place a step may hold templates."""
    if isinstance(step, MapStep):
        return [("map", step.map)]
    if isinstance(step, HttpStep):
        h = step.http
        fields = ("url", "path", "headers", "query", "json", "body")
        return [(f"http.{f}", getattr(h, f)) for f in fields]
    if isinstance(step, SqlStep):
        return [("sql.params", step.sql.params)]
    if isinstance(step, ConditionStep):
        return [("condition.if", step.condition.if_)]
    if isinstance(step, RespondStep):
        r = step.respond
        return [("respond.status", r.status), ("respond.headers", r.headers), ("respond.body", r.body)]
    return [("python.input", step.python.input)]


def _templates(
    where: str, field: str, value: Any, roots: tuple[str, ...], order: _Order | None = None
) -> None:
    """Compile every template under `value`, naming the exact field of a failure."""
    if isinstance(value, dict):
        for key, item in value.items():
            _templates(where, f"{field}.{key}", item, roots, order)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _templates(where, f"{field}[{index}]", item, roots, order)
    elif isinstance(value, str):
        if "${env:" in value or "${secret:" in value:
            raise SpecError(
                f"{where}, field {field}: ${{env:...}} is read only in connections; "
                "declare a connection that holds the secret and use it here"
            )
        if value.rfind("{{") > value.rfind("}}"):
            # Compiling keeps it as text (stored triggers must still run); a new file is told.
            raise SpecError(
                f"{where}, field {field}: a `{{{{` is not closed by `}}}}`; an expression is written {{{{ expression }}}}"
            )
        try:
            compiled = compile_template(value, roots)
        except ExpressionError as exc:
            raise SpecError(f"{where}, field {field}: {exc}") from None
        if order is not None:
            _check_steps_read(f"{where}, field {field}", compiled, *order)


def _check_steps_read(where: str, compiled: Any, ran: list[str], known: frozenset[str]) -> None:
    """Each `steps.<id>` an expression reads names a step that ran before this one."""
    for expr in expressions_in(compiled):
        for step in steps_read(expr):
            if step in ran:
                continue
            reason = f"unknown step `{step}`"
            if step in known:
                reason = f"step `{step}` does not run before this one"
            before = (
                f"the steps before this one are {', '.join(ran)}" if ran else "no step runs before this one"
            )
            raise SpecError(f"{where}: expression {{{{ {expr.source} }}}}: {reason}; {before}")


def _check_python(where: str, step: PythonStep) -> None:
    try:
        plugin = load_plugin(step.python.step)
    except ValueError as exc:
        raise SpecError(f"{where}, field python.step: {exc}") from None
    try:
        configure(plugin, step.python.config)
    except PluginConfigInvalid as exc:
        raise SpecError(f"{where}, field python.{exc.field}: {exc.reason}") from None


def _check_connection(where: str, connection: Connection) -> None:
    if isinstance(connection, PostgresConnection):
        _references(where, "dsn", connection.dsn)
        if not _REFERENCE.fullmatch(connection.dsn):
            _check_dsn(where, connection.dsn)
        return
    _references(where, "base_url", connection.base_url)
    if not connection.base_url.startswith(("http://", "https://", "${env:", "${secret:")):
        raise SpecError(f"{where}, field base_url: must start with http:// or https://")
    if _literal_password(_split(where, "base_url", connection.base_url)):
        raise SpecError(
            f"{where}, field base_url: the password must be an ${{env:NAME}} reference, never written in the file"
        )
    for header, value in connection.headers.items():
        _references(where, f"headers.{header}", value)
        if is_credential_header(header) and not _REFERENCE.search(value):
            raise SpecError(
                f"{where}, field headers.{header}: a credential must be an ${{env:NAME}} reference, "
                "never written in the file"
            )


def _references(where: str, field: str, value: str) -> None:
    """Every `${` must open a well-formed `${env:NAME}`, not naming one of hookline's settings."""
    if _REFERENCE.sub("", value).count("${"):
        raise SpecError(f"{where}, field {field}: a secret is written ${{env:NAME}} (letters, digits, _)")
    _not_reserved(where, field, value)


def _not_reserved(where: str, field: str, value: str) -> None:
    for name in referenced_names(value):
        try:
            check_not_reserved(name)
        except ReservedSecret as exc:
            raise SpecError(f"{where}, field {field}: {exc}") from None


def _check_dsn(where: str, dsn: str) -> None:
    parts = _split(where, "dsn", dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise SpecError(f"{where}, field dsn: must be a postgresql://user@host/database URL")
    if _literal_password(parts) or any(
        p != _REFERENCE_MARK for p in parse_qs(parts.query).get("password", [])
    ):
        raise SpecError(
            f"{where}, field dsn: the password must be an ${{env:NAME}} reference, never written in the file"
        )


def _split(where: str, field: str, url: str) -> SplitResult:
    """`url` in parts, or a SpecError naming the field (`http://[::1/x`, a port `:99999999`).

    Each `${env:NAME}` and `{{ }}` is checked as a stand-in, not as written: the port of
    `db:${env:PORT}` is known only when it is filled in. The parts hold marks in their place.
    """
    try:
        # Inside `[...]` a stand-in must be an IPv6 address (`http://[${env:V6}]:8080/`).
        shape = urlsplit(_FILLED_LATER.sub(_SHAPE_STAND_IN, _IPV6_FILLED_LATER.sub("[::1]", url)))
        if "," not in shape.netloc:  # a multi-host DSN (`h1:5432,h2:5432`) has no one port
            shape.port  # noqa: B018 (parsed lazily; raises for a bad one)
        return urlsplit(_FILLED_LATER.sub(_mark, _IPV6_FILLED_LATER.sub("[::1]", url)))
    except ValueError as exc:
        raise SpecError(f"{where}, field {field}: not a valid URL ({exc})") from None


_IPV6_FILLED_LATER = re.compile(r"\[(?:\$\{(?:env|secret):[^}]*\}|\{\{.*?\}\})\]")


def _mark(match: re.Match[str]) -> str:
    return _REFERENCE_MARK if match[1] else _EXPRESSION_MARK


def _literal_password(parts: SplitResult) -> bool:
    """Whether a URL (parts from `_split`) carries a password that is not one `${env:NAME}`."""
    password = parts.password
    return bool(password) and password != _REFERENCE_MARK
