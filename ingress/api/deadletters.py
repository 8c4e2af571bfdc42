"""`/api/dead-letters`: what ran out of attempts, with its execution's error, and replay.

Reading takes the dead letters unacknowledged and hands back every one not replayed
(shared/ops/deadletters.py): nothing is lost by looking.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import get, post

from ingress.api.access import Scope, database
from ingress.api.resources import Resources
from shared.errors import HooklineError, NotFound
from shared.ids import is_uuid
from shared.ops.deadletters import DeadLetter, DeadLetters


class DeadLetterView(msgspec.Struct, kw_only=True):
    """A dead letter and its execution's last state (None: never recorded)."""

    id: str
    workspace: str | None
    trigger: str | None
    reason: str
    queue: str
    died_at: datetime | None
    status: str | None = None
    attempts: int | None = None
    error: str | None = None


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Dead letters to replay, by execution id."""

    ids: Annotated[list[str], msgspec.Meta(min_length=1, max_length=1000)]


class NotReplayed(msgspec.Struct, kw_only=True):
    """A dead letter found but not put back, and why (it stays a dead letter)."""

    id: str
    error: str


class ReplayResult(msgspec.Struct, kw_only=True):
    """Which were put back on their triggers' routes, which were not found, and which could
    not be put back (a deleted trigger, a letter that is not an invocation)."""

    replayed: list[str]
    missing: list[str]
    failed: list[NotReplayed] = msgspec.field(default_factory=list)


async def describe(res: Resources, letters: list[DeadLetter]) -> list[DeadLetterView]:
    """Dead letters with their executions' status, attempts and error."""
    ids = [x.id for x in letters if is_uuid(x.id)]
    async with database(res) as connection:
        rows = await connection.fetch(
            "select id::text, status, attempts, error from executions where id = any($1::uuid[])", ids
        )
    found = {r["id"]: r for r in rows}
    views = []
    for x in letters:
        row = found.get(x.id)
        views.append(
            DeadLetterView(
                id=x.id,
                workspace=x.workspace,
                trigger=x.trigger,
                reason=x.reason,
                queue=x.queue,
                died_at=x.died_at,
                status=row["status"] if row else None,
                attempts=row["attempts"] if row else None,
                error=row["error"] if row else None,
            )
        )
    return views


async def dead_letters(
    res: Resources, access: Scope, workspace: str | None, trigger: str | None
) -> list[DeadLetterView]:
    """The dead letters this token may see."""
    workspace = access.narrow(workspace)
    async with (
        database(res) as lock,
        DeadLetters.opened(res.publisher.connection, res.settings.amqp_prefix, lock) as letters,
    ):
        selected = letters.select(None, workspace, trigger)
    return await describe(res, selected)


async def replay_letters(res: Resources, access: Scope, ids: list[str]) -> ReplayResult:
    """Replay these dead letters (confirmed publish, then ack); the rest stay. One that
    cannot be put back is reported in `failed` and does not stop the others."""
    replayed: list[str] = []
    failed: list[NotReplayed] = []
    async with (
        database(res) as lock,
        DeadLetters.opened(res.publisher.connection, res.settings.amqp_prefix, lock) as letters,
    ):
        for letter in letters.select(set(ids), access.workspace, None):
            try:
                await letters.replay(letter)
            except HooklineError as exc:
                failed.append(NotReplayed(id=letter.id, error=str(exc)))
                if len(ids) == 1:
                    raise  # one asked for: its error is the answer (409, 503)
                continue
            replayed.append(letter.id)
    found = set(replayed) | {x.id for x in failed}
    return ReplayResult(replayed=replayed, missing=sorted(set(ids) - found), failed=failed)


def routes(res: Resources) -> list[Any]:
    """The dead-letter handlers."""

    @get("/dead-letters", summary="Dead letters, with their executions' errors")
    async def list_all(
        access: Scope, workspace: str | None = None, trigger: str | None = None
    ) -> list[DeadLetterView]:
        return await dead_letters(res, access, workspace, trigger)

    @post("/dead-letters/replay", summary="Replay dead letters by execution id", status_code=200)
    async def replay_many(access: Scope, data: ReplayRequest) -> ReplayResult:
        return await replay_letters(res, access, data.ids)

    @post("/dead-letters/{execution_id:str}/replay", summary="Replay one dead letter", status_code=200)
    async def replay_one(access: Scope, execution_id: str) -> ReplayResult:
        result = await replay_letters(res, access, [execution_id])
        if not result.replayed:
            raise NotFound(f"no dead letter {execution_id}")
        return result

    return [list_all, replay_many, replay_one]
