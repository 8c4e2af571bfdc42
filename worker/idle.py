"""Burst mode (arq's): wait until a running worker has nothing left to do.

Idle means: the queues the worker reads (and the retry tiers that flow back into them)
hold no ready message, and no run is in flight, on a few polls in a row. A message
delivered to this process but not yet handed to its run is neither ready on the broker nor
in flight here for a moment; so is one a retry tier is dead-lettering into the work queue.
The quiet polls in a row are what covers those moments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from shared.broker.inspection import queue_state
from shared.errors import BrokerUnavailable

POLL_SECONDS = 0.05
QUIET_POLLS = 3


async def until_idle(
    running: asyncio.Future[None],
    started: asyncio.Event,
    connection: Callable[[], AbstractConnection | None],
    queues: Callable[[], Iterable[str]],
    busy: Callable[[], bool],
    *,
    poll: float = POLL_SECONDS,
    quiet: int = QUIET_POLLS,
) -> None:
    """Return once idle (see above) after `started`, or as soon as `running` ends (the
    worker's `run()`: its error, if any, is the caller's to await)."""
    starting = asyncio.ensure_future(started.wait())
    either: set[asyncio.Future[Any]] = {running, starting}
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    starting.cancel()
    calm = 0
    while calm < quiet and not running.done():
        await asyncio.sleep(poll)
        # Busy is asked again after the broker answered: a run may have started meanwhile.
        calm = calm + 1 if not busy() and await _all_empty(connection(), queues()) and not busy() else 0


async def _all_empty(connection: AbstractConnection | None, queues: Iterable[str]) -> bool:
    """Whether none of `queues` holds a ready message (a queue not declared holds none)."""
    if connection is None or connection.is_closed:
        return False
    try:
        for name in queues:
            state = await queue_state(connection, name)
            if state is not None and state.ready:
                return False
    except (*CONNECTION_EXCEPTIONS, BrokerUnavailable):
        return False  # the broker is away: not known to be empty
    return True
