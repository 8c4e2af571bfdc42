"""The watchdog: a delivery held past its run's deadline is settled, and the worker says so.

A run ends by the trigger's `workflow_timeout`, and its record is written while PostgreSQL
answers; a delivery still unsettled a margin after that is held by something that hung (a
bug). Left alone it would hold a prefetch slot until RabbitMQ's `consumer_timeout` closes
the channel, taking every other delivery of that channel back with it. The watchdog cancels
the run and settles the delivery (see `Runner._overdue`); from then on the worker's /readyz
and heartbeat say `deliveries: false`, until it is restarted. While PostgreSQL is away runs
wait on purpose (nothing is acknowledged unrecorded), and the watchdog waits with them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
OVERDUE_SECONDS = 10.0


@dataclass
class _Watched:
    task: asyncio.Task[Any]
    deadline: float
    overdue: Callable[[], Awaitable[None]]


class Watchdog:
    """Deadlines of the deliveries in flight; `run()` settles the overdue ones."""

    def __init__(
        self,
        margin: float,
        longest: float,
        outage: Callable[[], Awaitable[bool]],
        every: float = CHECK_SECONDS,
    ) -> None:
        self._margin = margin  # past the run's own timeout, for its record and reply
        self._longest = longest  # no delivery is held longer (stays below consumer_timeout)
        self._outage = outage
        self._every = every
        self._watched: dict[int, _Watched] = {}
        self.overdue = 0  # deliveries this worker had to settle this way

    @property
    def healthy(self) -> bool:
        """False once a delivery had to be settled by the watchdog."""
        return self.overdue == 0

    def watch(self, key: object, seconds: float, overdue: Callable[[], Awaitable[None]]) -> None:
        """(Re)start the clock of the current task's delivery: `seconds` plus the margin."""
        task = asyncio.current_task()
        assert task is not None
        deadline = time.monotonic() + min(seconds + self._margin, self._longest)
        self._watched[id(key)] = _Watched(task, deadline, overdue)

    def release(self, key: object) -> None:
        """Stop the clock: the delivery is settled, or waits on purpose (a backoff, an operator)."""
        self._watched.pop(id(key), None)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            now = time.monotonic()
            late = [key for key, watched in self._watched.items() if watched.deadline <= now]
            if not late or await self._outage():
                continue
            for key in late:
                watched = self._watched.pop(key, None)
                if watched is None:
                    continue
                self.overdue += 1
                watched.task.cancel()
                try:
                    # Settling comes first and takes no time; the rest (a minimal record) may
                    # not hold up the next overdue delivery for long.
                    await asyncio.wait_for(watched.overdue(), OVERDUE_SECONDS)
                except Exception as exc:  # noqa: BLE001 - the next overdue delivery still gets its turn
                    log.error("watchdog could not settle a delivery (%s)", type(exc).__name__)
