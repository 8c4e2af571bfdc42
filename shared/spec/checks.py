"""Checks a decoded workspace must pass before anything is applied.

What msgspec cannot see from one Struct: every template compiles (syntax, names, functions),
steps name connections the document declares and of the right type, python steps exist
and accept their config, and secrets appear only as `${env:NAME}` in connections.
Messages read "trigger T, step S, field F: reason"; the loader puts the file in front.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared.errors import ExpressionError, SpecError
from shared.expressions import RESPONSE_ROOTS, WORKFLOW_ROOTS, Expr, compile_template
from shared.spec.connections import Connection, HttpConnection, PostgresConnection, is_credential_header
from shared.spec.model import Trigger, Workspace
from shared.spec.plugins import PluginConfigInvalid, configure, load_plugin
from shared.spec.steps import (
    ConditionStep,
    HttpStep,
    MapStep,
    PythonStep,
    RespondStep,
    SqlStep,
    Step,
)

# `${env:NAME}` anywhere in a string (shared/spec/secrets.py resolves the same syntax).
_REFERENCE = re.compile(r"\$\{env:[A-Za-z_][A-Za-z0-9_]*\}")


def check_workspace(workspace: Workspace) -> None:
    """Raise SpecError for the first problem found, in file order."""
    for name, connection in workspace.connections.items():
        _check_connection(f"connection {name}", connection)
    for trigger in workspace.triggers:
        _check_trigger(trigger, workspace.connections)


def _check_trigger(trigger: Trigger, connections: dict[str, Connection]) -> None:
    where = f"trigger {trigger.name}"
    _templates(where, "response.headers", trigger.response.headers, RESPONSE_ROOTS)
    _templates(where, "response.body", trigger.response.body, RESPONSE_ROOTS)
    _check_steps(trigger.workflow, where, connections)


def _check_steps(steps: list[Step], where: str, connections: dict[str, Connection]) -> None:
    for step in steps:
        here = f"{where}, step {step.id}"
        for field, value in _template_fields(step):
            _templates(here, field, value, WORKFLOW_ROOTS)
        if isinstance(step, HttpStep) and step.http.url and _literal_password(step.http.url):
            raise SpecError(
                f"{here}, field http.url: a password in a URL is a secret; "
                "use an http connection, whose headers can hold ${env:NAME} references"
            )
        if isinstance(step, HttpStep) and step.http.connection is not None:
            _connection(here, "http", step.http.connection, HttpConnection, connections)
        elif isinstance(step, SqlStep):
            _connection(here, "sql", step.sql.connection, PostgresConnection, connections)
        elif isinstance(step, PythonStep):
            _check_python(here, step)
        elif isinstance(step, ConditionStep):
            # Templates were compiled above; `if` must be one expression, not text around some.
            if not isinstance(compile_template(step.condition.if_.strip()), Expr):
                raise SpecError(
                    f"{here}, field condition.if: must be one expression, such as {{{{ x == `1` }}}}"
                )
            _check_steps(step.condition.then, f"{here}, then", connections)
            _check_steps(step.condition.else_, f"{here}, else", connections)


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


def _templates(where: str, field: str, value: Any, roots: tuple[str, ...]) -> None:
    """Compile every template under `value`, naming the exact field of a failure."""
    if isinstance(value, dict):
        for key, item in value.items():
            _templates(where, f"{field}.{key}", item, roots)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _templates(where, f"{field}[{index}]", item, roots)
    elif isinstance(value, str):
        if "${env:" in value:
            raise SpecError(
                f"{where}, field {field}: ${{env:...}} is read only in connections; "
                "declare a connection that holds the secret and use it here"
            )
        try:
            compile_template(value, roots)
        except ExpressionError as exc:
            raise SpecError(f"{where}, field {field}: {exc}") from None


def _connection(
    where: str, kind: str, name: str, wanted: type[Connection], connections: dict[str, Connection]
) -> None:
    connection = connections.get(name)
    if connection is None:
        declared = ", ".join(sorted(connections)) or "none"
        raise SpecError(
            f"{where}, field {kind}.connection: unknown connection {name!r} (this document declares: {declared})"
        )
    if not isinstance(connection, wanted):
        raise SpecError(
            f"{where}, field {kind}.connection: connection {name!r} is of type {_type(connection)}; "
            f"an {kind} step needs one of type {_type(wanted)}"
        )


def _type(connection: Connection | type[Connection]) -> str:
    return str(connection.__struct_config__.tag)  # the `type:` written in the file


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
    if not connection.base_url.startswith(("http://", "https://", "${env:")):
        raise SpecError(f"{where}, field base_url: must start with http:// or https://")
    if _literal_password(connection.base_url):
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
    """Every `${` must open a well-formed `${env:NAME}`."""
    if _REFERENCE.sub("", value).count("${"):
        raise SpecError(f"{where}, field {field}: a secret is written ${{env:NAME}} (letters, digits, _)")


def _check_dsn(where: str, dsn: str) -> None:
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise SpecError(f"{where}, field dsn: must be a postgresql://user@host/database URL")
    if _literal_password(dsn) or any(
        not _REFERENCE.fullmatch(p) for p in parse_qs(parts.query).get("password", [])
    ):
        raise SpecError(
            f"{where}, field dsn: the password must be an ${{env:NAME}} reference, never written in the file"
        )


def _literal_password(url: str) -> bool:
    """Whether a URL carries a password written out (`user:pw@`), not a `${env:NAME}`."""
    password = urlsplit(url).password
    return bool(password) and not _REFERENCE.fullmatch(password or "")
