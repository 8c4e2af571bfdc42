"""`/api/dead-letters`: what ran out of attempts, with its execution's error, and replay.

Letters are read from the `dead_letters` table (the dispatcher moves them out of the queue),
a page at a time, and only the token's workspace's (shared/ops/deadletters.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, Response, get, post
from litestar.params import Parameter

from ingress.api.access import AccessDep, Scope, database
from ingress.dependencies import PoolDep, PublisherDep, SettingsDep
from ingress.publishing import InvocationPublisher
from shared.db.deadletters import LetterFilter
from shared.db.runlog import BadFilter
from shared.errors import HooklineError, NotFound
from shared.ops import deadletters
from shared.ops.deadletters import DeadLetterView
from shared.settings import Settings

Limit = Annotated[int, Parameter(ge=1, le=1000, description="dead letters per page")]
NEXT_CURSOR_HEADER = "X-Next-Cursor"  # the `cursor` of the next page; absent on the last


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Dead letters to replay: by execution id, or `all` of those matching the filters."""

    ids: Annotated[list[str], msgspec.Meta(min_length=1, max_length=1000)] | None = None
    all: bool = False
    workspace: str | None = None
    trigger: str | None = None
    since: datetime | None = None  # died at or after
    until: datetime | None = None  # died before


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


async def dead_letters(
    pool: asyncpg.Pool,
    access: Scope,
    workspace: str | None,
    trigger: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> deadletters.DeadLetterPage:
    """A page of the dead letters this token may see, newest first."""
    where = LetterFilter(access.narrow(workspace), trigger, since, until, None, cursor)
    async with database(pool) as connection:
        return await deadletters.page(connection, where, limit)


async def replay_letters(
    pool: asyncpg.Pool, publisher: InvocationPublisher, settings: Settings, access: Scope, ids: list[str]
) -> ReplayResult:
    """Replay these dead letters (confirmed publish, then delete); the rest stay."""
    return await replay_matching(pool, publisher, settings, access, ReplayRequest(ids=ids))


async def replay_matching(
    pool: asyncpg.Pool, publisher: InvocationPublisher, settings: Settings, access: Scope, data: ReplayRequest
) -> ReplayResult:
    """Replay the letters asked for, within the token's workspace. One that cannot be put
    back is reported in `failed` and does not stop the others; when a single id was asked
    for, its error is the answer (409, 503)."""
    if (data.ids is None) == (not data.all):
        raise BadFilter("give `ids` or `all: true`, not both and not neither")
    where = LetterFilter(access.narrow(data.workspace), data.trigger, data.since, data.until, data.ids)
    single = data.ids is not None and len(data.ids) == 1

    def stop(_: HooklineError) -> bool:
        return single

    async with database(pool) as connection:
        outcome = await deadletters.replay(
            connection,
            publisher.connection,
            settings.amqp_prefix,
            where,
            settings.publish_timeout,
            stop,
        )
    missing = sorted(set(data.ids or ()) - outcome.found)
    return ReplayResult(
        replayed=[x for x, _ in outcome.replayed],
        missing=missing,
        failed=[NotReplayed(id=x, error=e) for x, e in outcome.failed],
    )


class DeadLetterController(Controller):
    """The dead-letter handlers."""

    path = "/dead-letters"

    @get(
        summary=f"Dead letters, newest first, with their executions' errors; `{NEXT_CURSOR_HEADER}` pages on"
    )
    async def list_all(
        self,
        pool: PoolDep,
        access: AccessDep,
        workspace: str | None = None,
        trigger: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: Limit = 100,
    ) -> Response[list[DeadLetterView]]:
        found = await dead_letters(pool, access, workspace, trigger, since, until, cursor, limit)
        headers = {NEXT_CURSOR_HEADER: found.next_cursor} if found.next_cursor else {}
        return Response(found.items, headers=headers)

    @post("/replay", summary="Replay dead letters by execution id or by filter", status_code=200)
    async def replay_many(
        self,
        pool: PoolDep,
        publisher: PublisherDep,
        settings: SettingsDep,
        access: AccessDep,
        data: ReplayRequest,
    ) -> ReplayResult:
        return await replay_matching(pool, publisher, settings, access, data)

    @post("/{execution_id:str}/replay", summary="Replay one dead letter", status_code=200)
    async def replay_one(
        self,
        pool: PoolDep,
        publisher: PublisherDep,
        settings: SettingsDep,
        access: AccessDep,
        execution_id: str,
    ) -> ReplayResult:
        result = await replay_letters(pool, publisher, settings, access, [execution_id])
        if not result.replayed:
            raise NotFound(f"no dead letter {execution_id}")
        return result
