"""The run log: one row per invocation, written in batches by workers, read by operators."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import msgspec

from shared.db.pool import Connection, json_text, pg_text
from shared.errors import NotFound
from shared.wire.messages import Reply, answer_view

Status = Literal["running", "retrying", "succeeded", "failed", "dead"]


class ExecutionRecord(msgspec.Struct, kw_only=True):
    """What a worker writes after a run (times are UNIX seconds)."""

    id: str
    workspace: str
    trigger: str
    version: int
    status: Status
    attempts: int
    received_at: float
    started_at: float
    finished_at: float | None
    request: Any
    output: Any = None
    response: Reply | None = None  # the answer as the caller got it
    steps: list[Any] = []
    error: str | None = None
    replay_of: str | None = None
    caller: str | None = None
    trace_id: str | None = None  # 32 hex digits, when tracing is on (shared/runtime/tracing.py)


# One statement for a whole batch: arrays in, one row each out of unnest. A redelivered
# invocation finds its row instead of creating a second record. A record carries its run
# number (the worker counts runs, redeliveries included), so writing the same run twice (a
# commit whose answer was lost in a database outage) counts it once, and an older run
# never overwrites a newer one. The trace id is the first one recorded: the call's (a run
# resumed by an operator starts a trace of its own, and a minimal record has none).
_INSERT = """
insert into executions (id, workspace, trigger, trigger_version, status, attempts, received_at,
                        started_at, finished_at, request, output, response, steps, error, replay_of,
                        caller, trace_id)
"""
_ON_CONFLICT = """
on conflict (id) do update set
    status = excluded.status,
    attempts = excluded.attempts,
    started_at = excluded.started_at,
    finished_at = excluded.finished_at,
    output = excluded.output,
    response = excluded.response,
    steps = excluded.steps,
    error = excluded.error,
    trace_id = coalesce(executions.trace_id, excluded.trace_id)
where excluded.attempts >= executions.attempts
"""
# Both statements are put together from the constants above only (no value is spliced in).
_UPSERT = f"""{_INSERT}
select id, workspace, trigger, version, status, attempts, to_timestamp(received_at),
       to_timestamp(started_at), to_timestamp(finished_at), request::json, output::json,
       response::json, steps::json, error, replay_of, caller, trace_id
from unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[], $7::float8[],
            $8::float8[], $9::float8[], $10::text[], $11::text[], $12::text[], $13::text[],
            $14::text[], $15::uuid[], $16::text[], $17::text[])
     as r(id, workspace, trigger, version, status, attempts, received_at, started_at,
          finished_at, request, output, response, steps, error, replay_of, caller, trace_id)
{_ON_CONFLICT}"""  # noqa: S608
# A batch of one (an ordered lane's run, an idle worker's): the same upsert over VALUES,
# which PostgreSQL runs in 0.11 ms where unnest over one-element arrays takes 0.18 ms. JSON
# goes in as text, cast in SQL as above (a json parameter would go through the pool's codec).
_UPSERT_ONE = f"""{_INSERT}
values ($1::uuid, $2::text, $3::text, $4::int, $5::text, $6::int, to_timestamp($7::float8),
        to_timestamp($8::float8), to_timestamp($9::float8), $10::text::json, $11::text::json,
        $12::text::json, $13::text::json, $14::text, $15::uuid, $16::text, $17::text)
{_ON_CONFLICT}"""


def _json(value: Any) -> str | None:
    return None if value is None else json_text(value)


def _row(r: ExecutionRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.workspace,
        r.trigger,
        r.version,
        r.status,
        r.attempts,
        r.received_at,
        r.started_at,
        r.finished_at,
        json_text(r.request),
        _json(r.output),
        _json(r.response),
        json_text(r.steps),
        pg_text(r.error),
        r.replay_of,
        r.caller,
        r.trace_id,
    )


# A run that must happen once per id although its message may be published twice (a
# schedule's tick: see dispatcher/schedules.py): the first worker to start it inserts a
# `running` row with no run counted yet (the run's own record replaces it); a copy that
# finds a row does not run.
_CLAIM = """
insert into executions (id, workspace, trigger, trigger_version, status, attempts, received_at,
                        started_at, request, replay_of, caller)
values ($1::uuid, $2::text, $3::text, $4::int, 'running', 0, to_timestamp($5::float8), now(),
        $6::text::json, $7::uuid, $8::text)
on conflict (id) do nothing
returning id
"""


async def claim_execution(connection: Connection, record: ExecutionRecord) -> bool:
    """Insert `record`'s execution as started (no run counted) unless one is recorded: False then."""
    claimed = await connection.fetchval(
        _CLAIM,
        record.id,
        record.workspace,
        record.trigger,
        record.version,
        record.received_at,
        json_text(record.request),
        record.replay_of,
        record.caller,
    )
    return claimed is not None


async def record_executions(connection: Connection, records: list[ExecutionRecord]) -> None:
    """Upsert a batch of executions in one statement (one commit for all of them)."""
    if len(records) == 1:
        await connection.execute(_UPSERT_ONE, *_row(records[0]))
        return
    columns: list[list[Any]] = [[] for _ in range(17)]
    for r in records:
        for column, value in zip(columns, _row(r), strict=True):
            column.append(value)
    await connection.execute(_UPSERT, *columns)


class Execution(msgspec.Struct, kw_only=True):
    """An execution as operators see it (`hookline executions show`, the API)."""

    id: str
    workspace: str
    trigger: str
    trigger_version: int
    status: Status
    attempts: int
    received_at: datetime
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    request: Any
    output: Any
    response: Any
    steps: list[Any]
    error: str | None
    replay_of: str | None
    trace_id: str | None = None  # the W3C trace id of its call's trace (tracing on)


async def get_execution(connection: Connection, execution_id: str) -> Execution:
    """One execution by id; NotFound when no worker has recorded it (yet)."""
    return _execution(await _execution_row(connection, execution_id))


async def get_execution_and_caller(connection: Connection, execution_id: str) -> tuple[Execution, str | None]:
    """An execution and who made the call (see Invocation.caller: None when the trigger
    cannot tell callers apart), from one read."""
    row = await _execution_row(connection, execution_id)
    return _execution(row), row["caller"]


async def _execution_row(connection: Connection, execution_id: str) -> asyncpg.Record:
    try:
        key = uuid.UUID(execution_id)
    except ValueError:
        raise NotFound(f"no execution {execution_id!r}: not an execution id") from None
    row = await connection.fetchrow("select * from executions where id = $1", key)
    if row is None:
        raise NotFound(f"no execution {execution_id} (a queued execution appears once a worker runs it)")
    return row


def duration_ms(row: Any) -> float | None:
    """A recorded run's duration in milliseconds (None while it has not finished)."""
    finished = row["finished_at"]
    if finished is None:
        return None
    elapsed: float = (finished - row["started_at"]).total_seconds()
    return round(elapsed * 1000, 3)


def utc(moment: datetime | None) -> datetime | None:
    """A timestamp column's value in UTC (None stays None)."""
    return moment.astimezone(UTC) if moment is not None else None


def _execution(row: asyncpg.Record) -> Execution:
    finished = row["finished_at"]
    return Execution(
        id=str(row["id"]),
        workspace=row["workspace"],
        trigger=row["trigger"],
        trigger_version=row["trigger_version"],
        status=row["status"],
        attempts=row["attempts"],
        received_at=row["received_at"].astimezone(UTC),
        started_at=row["started_at"].astimezone(UTC),
        finished_at=utc(finished),
        duration_ms=duration_ms(row),
        request=row["request"],
        output=row["output"],
        response=_answer(row["response"]),
        steps=row["steps"],
        error=row["error"],
        replay_of=str(row["replay_of"]) if row["replay_of"] else None,
        trace_id=row["trace_id"],
    )


def _answer(response: Any) -> dict[str, Any] | None:
    """The recorded answer as operators read it (see `answer_view`)."""
    if response is None:
        return None
    try:
        return answer_view(msgspec.convert(response, Reply))
    except msgspec.ValidationError:
        return dict(response)  # written by a version this one cannot read: shown as stored


async def recorded_state(connection: Connection, execution_id: str) -> tuple[int, Status | None]:
    """Runs recorded and the recorded status of an execution ((0, None) when none is)."""
    row = await connection.fetchrow(
        "select attempts, status from executions where id = $1", uuid.UUID(execution_id)
    )
    return (0, None) if row is None else (int(row["attempts"]), row["status"])
