"""Stopped lanes (`on_exhausted: stop`): hold the message until an operator answers.

The worker keeps the failed message unacknowledged, so with prefetch 1 on a single-active-
consumer queue nothing behind it can run, on this worker or any other. The hold is also a
row in PostgreSQL: a worker that gets the message again after a restart (it goes back to
the head of the queue) sees the row and keeps waiting instead of running it once more.
`hookline lanes resume W/T --retry|--skip` writes the answer; the worker polls for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from shared.db.lanes import Hold, Resume, get_hold, hold_lane, release_hold
from shared.db.pool import Connection
from shared.db.retry import retry_db

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
T = TypeVar("T")


class Abandoned(Exception):
    """Raised when the worker stops while a run waits; the message goes back unsettled."""


class LaneHolds:
    """Writes holds, waits for the operator's answer, releases them."""

    def __init__(self, pool: asyncpg.Pool, stopping: asyncio.Event) -> None:
        self._pool = pool
        self._stopping = stopping

    async def held(self, queue: str, execution_id: str) -> Hold | None:
        """The hold on `queue` if it holds this execution (a redelivered held message)."""
        hold = await self._retrying(lambda c: get_hold(c, queue))
        return hold if hold is not None and hold.execution_id == execution_id else None

    async def hold(
        self, queue: str, workspace: str, trigger: str, execution_id: str, error: str | None
    ) -> None:
        """Record the stop (and clear any earlier answer)."""
        await self._retrying(lambda c: hold_lane(c, queue, workspace, trigger, execution_id, error))
        log.warning(
            "lane stopped: the message ran out of attempts; resume with `hookline lanes resume %s/%s`",
            workspace,
            trigger,
            extra={"queue": queue, "execution_id": execution_id},
        )

    async def answer(self, queue: str, gone: Callable[[], bool] = lambda: False) -> Resume:
        """Wait until an operator answers the hold on `queue`; Abandoned if stopping first,
        or once `gone()` says the message was taken back (its redelivery waits instead)."""
        while True:
            hold = await self._retrying(lambda c: get_hold(c, queue))
            if hold is not None and hold.resume is not None:
                return hold.resume
            if gone():
                raise Abandoned
            await pause(self._stopping, POLL_SECONDS)

    async def release(self, queue: str) -> None:
        """The lane moves again."""
        await self._retrying(lambda c: release_hold(c, queue))

    async def _retrying(self, query: Callable[[Connection], Awaitable[T]]) -> T:
        # While PostgreSQL is away the lane just waits longer; stopping still wins.
        async def attempt() -> T:
            if self._stopping.is_set():
                raise Abandoned
            async with self._pool.acquire() as connection:
                return await query(connection)

        return await retry_db(attempt)


async def pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or raise Abandoned as soon as the worker is stopping."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return
    raise Abandoned
