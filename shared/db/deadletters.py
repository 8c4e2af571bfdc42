"""The `dead_letters` table: letters the dispatcher moved out of the dead-letter queue,
listed newest first in keyset pages with their executions' last state, taken for replay.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.db.pool import Connection
from shared.db.runlog import BadFilter


@dataclass(frozen=True)
class NewLetter:
    """A dead letter as taken from the queue, to be stored."""

    id: str
    execution_id: str | None
    workspace: str | None
    trigger: str | None
    reason: str
    queue: str
    died_at: datetime
    body: bytes
    headers: bytes  # msgpack
    content_type: str | None
    type: str | None


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters: all fields optional, combined with `and`."""

    workspace: str | None = None
    trigger: str | None = None
    since: datetime | None = None  # died at or after
    until: datetime | None = None  # died before
    ids: list[str] | None = None
    before: str | None = None  # cursor: the `seq` of the last letter of the previous page


@dataclass(frozen=True)
class LetterRow:
    """One stored dead letter joined with its execution's last state (None: never recorded)."""

    seq: int
    id: str
    workspace: str | None
    trigger: str | None
    reason: str
    queue: str
    died_at: datetime
    status: str | None
    attempts: int | None
    error: str | None


@dataclass(frozen=True)
class StoredLetter:
    """What a replay needs of a stored letter."""

    seq: int
    id: str
    workspace: str | None
    trigger: str | None
    body: bytes
    headers: bytes
    content_type: str | None
    type: str | None


async def store_letters(connection: Connection, letters: list[NewLetter]) -> None:
    """Insert letters; one already there (a redelivery, or a letter that died again) is
    replaced and gets a new `seq`, so a replay in flight does not delete the new death."""
    await connection.executemany(
        "insert into dead_letters (id, execution_id, workspace, trigger, reason, queue, died_at, body,"
        " headers, content_type, type) values ($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        " on conflict (id) do update set seq = default, execution_id = excluded.execution_id,"
        " workspace = excluded.workspace, trigger = excluded.trigger, reason = excluded.reason,"
        " queue = excluded.queue, died_at = excluded.died_at, body = excluded.body,"
        " headers = excluded.headers, content_type = excluded.content_type, type = excluded.type",
        [
            (
                x.id,
                x.execution_id,
                x.workspace,
                x.trigger,
                x.reason,
                x.queue,
                x.died_at,
                x.body,
                x.headers,
                x.content_type,
                x.type,
            )
            for x in letters
        ],
    )


_WHERE = (
    " where ($1::text is null or d.workspace = $1) and ($2::text is null or d.trigger = $2)"
    " and ($3::timestamptz is null or d.died_at >= $3) and ($4::timestamptz is null or d.died_at < $4)"
    " and ($5::text[] is null or d.id = any($5)) and ($6::bigint is null or d.seq < $6)"
)


def _arguments(where: LetterFilter) -> tuple[Any, ...]:
    if where.trigger is not None and where.workspace is None:
        raise BadFilter("a trigger filter needs its workspace")
    before = None
    if where.before is not None:
        if not where.before.isdigit() or len(where.before) > 18:
            raise BadFilter(f"cursor {where.before!r} is not a dead-letter cursor")
        before = int(where.before)
    return (where.workspace, where.trigger, where.since, where.until, where.ids, before)


async def letter_page(
    connection: Connection, where: LetterFilter, limit: int
) -> tuple[list[LetterRow], str | None]:
    """Letters matching `where`, newest first, at most `limit`, and the next page's cursor."""
    rows = await connection.fetch(
        "select d.seq, d.id, d.workspace, d.trigger, d.reason, d.queue, d.died_at,"  # noqa: S608 (constant text, values bound)
        " e.status, e.attempts, e.error"
        " from dead_letters d left join executions e on e.id = d.execution_id"
        + _WHERE
        + " order by d.seq desc limit $7",
        *_arguments(where),
        limit + 1,
    )
    items = [
        LetterRow(
            seq=r["seq"],
            id=r["id"],
            workspace=r["workspace"],
            trigger=r["trigger"],
            reason=r["reason"],
            queue=r["queue"],
            died_at=r["died_at"].astimezone(UTC),
            status=r["status"],
            attempts=r["attempts"],
            error=r["error"],
        )
        for r in rows[:limit]
    ]
    return items, str(items[-1].seq) if len(rows) > limit else None


async def letters_to_replay(connection: Connection, where: LetterFilter, limit: int) -> list[StoredLetter]:
    """Up to `limit` letters matching `where`, newest first (each is locked by
    `lock_letter` as it is replayed)."""
    rows = await connection.fetch(
        "select d.seq, d.id, d.workspace, d.trigger, d.body, d.headers, d.content_type, d.type"  # noqa: S608 (constant text, values bound)
        " from dead_letters d" + _WHERE + " order by d.seq desc limit $7 for update skip locked",
        *_arguments(where),
        limit,
    )
    return [
        StoredLetter(
            seq=r["seq"],
            id=r["id"],
            workspace=r["workspace"],
            trigger=r["trigger"],
            body=r["body"],
            headers=r["headers"],
            content_type=r["content_type"],
            type=r["type"],
        )
        for r in rows
    ]


async def lock_letter(connection: Connection, letter_id: str, seq: int) -> bool:
    """Lock this version of a letter for the transaction; False when another replay holds it
    or it is gone or changed (replayed meanwhile, or died again)."""
    found = await connection.fetchval(
        "select 1 from dead_letters where id = $1 and seq = $2 for update skip locked", letter_id, seq
    )
    return found is not None


async def delete_letter(connection: Connection, letter_id: str, seq: int) -> None:
    """Remove the version of a letter that was replayed (a newer death stays)."""
    await connection.execute("delete from dead_letters where id = $1 and seq = $2", letter_id, seq)


def as_uuid(text: str) -> str | None:
    """`text` if it is an execution id (a UUID), else None."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


async def letter_counts(connection: Connection) -> dict[tuple[str, str], int]:
    """How many dead letters each trigger has (("", "") for letters that are not invocations)."""
    rows = await connection.fetch(
        "select coalesce(workspace, '') as workspace, coalesce(trigger, '') as trigger, count(*) as n"
        " from dead_letters group by 1, 2"
    )
    return {(r["workspace"], r["trigger"]): r["n"] for r in rows}
