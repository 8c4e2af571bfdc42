"""Waiting out a database outage: one retry policy for every caller that must not give up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from shared.db.pool import DB_ERRORS

T = TypeVar("T")


async def retry_db(
    call: Callable[[], Awaitable[T]], on_retry: Callable[[BaseException | None], None] | None = None
) -> T:
    """`call()`, again after each lost or refused connection (0.2 s doubling to 5 s), until it answers.

    Anything but a database outage (DB_ERRORS) propagates at once. `on_retry(error)` runs
    before each wait, for a log line.
    """

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry(state.outcome.exception() if state.outcome else None)

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(DB_ERRORS),
        wait=wait_exponential(multiplier=0.2, max=5),
        before_sleep=before_sleep,
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable")  # AsyncRetrying without a stop never ends otherwise
