"""`sql`: a parameterised query on a named postgres connection; its rows are the output.

The SQL text is fixed in the trigger file (the loader refuses `{{ }}` in it); values from
the request reach PostgreSQL only as bind parameters $1..$n, so they cannot change the
statement. Rows are read through a cursor, so a query returning more than `max_rows` fails
without loading the rest.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import asyncpg

from shared.db.pool import DB_ERRORS
from shared.expressions import compile_template, render
from shared.spec.steps import SqlStep
from worker.steps.base import RunContext, StepFailed, scrub


class SqlRunner:
    """Renders the parameters and runs the query in its own transaction."""

    kind = "sql"
    suspends = True

    def __init__(self, step: SqlStep) -> None:
        self.id = step.id
        self.timeout: float | None = step.sql.timeout
        self._sql = step.sql
        self.effects = step.sql.writes
        self.retry = step.retry
        self._params = [compile_template(p) for p in step.sql.params]

    async def run(self, context: RunContext) -> Any:
        resources = context.need_resources()
        params = [render(p, context.data) for p in self._params]
        name = self._sql.connection
        pool, secrets = await resources.postgres(context.workspace, name)
        context.secrets.update(secrets)
        try:
            async with pool.acquire() as connection, connection.transaction():
                statement = await connection.prepare(self._sql.query)
                cursor = await statement.cursor(*params)
                rows = await cursor.fetch(self._sql.max_rows + 1)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # PostgreSQL's own words (syntax, missing table, wrong parameter type) help most.
            raise StepFailed(scrub(f"connection {name}: {_one_line(exc)}", secrets)) from None
        except DB_ERRORS as exc:
            raise StepFailed(
                scrub(f"connection {name}: cannot reach the database ({exc})", secrets), cause="connection"
            ) from None
        if len(rows) > self._sql.max_rows:
            raise StepFailed(f"the query returned more than {self._sql.max_rows} rows (max_rows)")
        return [{key: _value(value) for key, value in row.items()} for row in rows]


def _value(value: Any) -> Any:
    """A column value as JSON would carry it, so expressions and records can use it."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    return value


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
