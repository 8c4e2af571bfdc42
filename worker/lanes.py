"""The ordered lanes a worker consumes: every queue of each ordered trigger's oldest layout.

One channel per lane with prefetch 1, so a lane holds one message at a time and a lane's
channel error never takes the others down. A lane is never *cancelled* while it holds a
message: cancelling the active consumer of a single-active-consumer quorum queue makes the
broker activate the next consumer and deliver the next message at once, while the first
is still running (measured on 3.10). A lane is let go by closing its channel when idle,
which hands any delivery not yet started back to the head of the queue.

A draining layout (the dispatcher switched the trigger to a new one) is consumed until
empty, then let go, so the dispatcher sees it empty with no consumer and deletes it;
only then does the next generation become the oldest and get consumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aio_pika.abc import AbstractChannel, AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from shared.broker.inspection import queue_state
from shared.broker.link import quietly
from shared.errors import BrokerUnavailable
from shared.wire.topology import LaneLayout
from worker.deliveries import Delivery, RawConsumer

log = logging.getLogger(__name__)

Handler = Callable[[Delivery, str], Awaitable[None]]


@dataclass
class LaneConsumer:
    """One ordered queue and, while consumed, its channel."""

    name: str
    draining: bool
    channel: AbstractRobustChannel | None = None
    closing: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def let_go_pending(self) -> bool:
        """Whether the lane was let go while a run was in flight (closed after it settles)."""
        return self.closing and self.channel is not None

    @property
    def busy(self) -> bool:
        """Whether a run of this lane is in flight."""
        return not self.idle.is_set()


def wanted_lanes(layouts: list[LaneLayout], prefix: str) -> dict[str, bool]:
    """Queue name -> draining, for the oldest layout of each trigger."""
    wanted: dict[str, bool] = {}
    seen: set[tuple[str, str]] = set()
    for layout in sorted(layouts, key=lambda x: (x.workspace, x.trigger, x.generation)):
        if (layout.workspace, layout.trigger) in seen:
            continue
        seen.add((layout.workspace, layout.trigger))
        for queue in layout.queues(prefix):
            wanted[queue] = layout.draining
    return wanted


class LaneSet:
    """Keeps one consumer per wanted lane; `tick()` retries what failed and lets drained lanes go."""

    def __init__(self, connection: AbstractRobustConnection, prefix: str, handler: Handler) -> None:
        self._connection = connection
        self._prefix = prefix
        self._handler = handler
        self._lanes: dict[str, LaneConsumer] = {}
        self._lock = asyncio.Lock()
        self.stopping = False

    @property
    def queues(self) -> list[str]:
        """The lanes wanted now (consumed, or to be once declared)."""
        return list(self._lanes)

    @property
    def busy(self) -> bool:
        """Whether a run of any lane is in flight."""
        return any(lane.busy for lane in self._lanes.values())

    async def sync(self, layouts: list[LaneLayout]) -> None:
        """Follow the layouts: consume new lanes, let go of the ones no longer wanted."""
        wanted = wanted_lanes(layouts, self._prefix)
        async with self._lock:
            for name in sorted(self._lanes.keys() - wanted.keys()):
                await self._let_go(self._lanes.pop(name))
            for name, draining in wanted.items():
                self._lanes.setdefault(name, LaneConsumer(name, draining)).draining = draining
        await self.tick()

    async def tick(self) -> None:
        """Consume lanes not consumed yet (queue just declared), let go of drained ones."""
        async with self._lock:
            for lane in list(self._lanes.values()):
                if self.stopping:
                    return
                try:
                    await self._tick(lane)
                except (*CONNECTION_EXCEPTIONS, BrokerUnavailable) as exc:
                    log.info(
                        "lane %s not ready (%s)", lane.name, type(exc).__name__, extra={"queue": lane.name}
                    )

    async def _tick(self, lane: LaneConsumer) -> None:
        if lane.channel is not None:
            if lane.draining and not lane.busy:
                state = await queue_state(self._connection, lane.name)
                if state is None or state.ready == 0:
                    await self._let_go(lane)
            return
        if lane.draining:
            state = await queue_state(self._connection, lane.name)
            if state is None or state.ready == 0:
                return
        elif await queue_state(self._connection, lane.name) is None:
            return  # not declared yet: the dispatcher reacts to the same change
        await self._consume(lane)

    async def _consume(self, lane: LaneConsumer) -> None:
        channel = await self._connection.channel()

        async def on_message(message: Delivery) -> None:
            # Decided before any await: a lane being let go, or a stopping worker, runs
            # nothing new; the unsettled delivery returns to the head when the channel closes.
            if lane.closing or self.stopping:
                return
            lane.idle.clear()
            try:
                await self._handler(message, lane.name)
            finally:
                lane.idle.set()
            if lane.let_go_pending() and not self.stopping:
                await self._let_go(lane)

        lane.closing = False  # before the first delivery can arrive
        try:
            await channel.set_qos(prefetch_count=1)
            await channel.get_queue(lane.name, ensure=True)
            await RawConsumer(channel, lane.name, on_message).start()
        except BaseException:
            # Not consuming: the lane stays unclaimed here and the next tick tries again.
            await _close_quietly(channel)
            raise
        lane.channel = channel  # consumed, only now
        log.info("consuming ordered lane %s", lane.name, extra={"queue": lane.name})

    async def _let_go(self, lane: LaneConsumer) -> None:
        lane.closing = True
        if lane.channel is None or lane.busy:
            return  # a busy lane is let go by its run, once settled
        channel, lane.channel = lane.channel, None
        if not channel.is_closed:
            await channel.close()
        log.info("stopped consuming lane %s", lane.name, extra={"queue": lane.name})

    async def close(self, grace: float) -> None:
        """Shutdown: run nothing new, let in-flight runs settle (within `grace`), close."""
        self.stopping = True
        runs = [lane.idle.wait() for lane in self._lanes.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*runs), grace)
        except TimeoutError:
            log.warning("ordered runs still in flight after %.0f s; handing them back", grace)
        for lane in self._lanes.values():
            lane.closing = True
            if lane.channel is not None and not lane.channel.is_closed:
                await quietly(lane.channel.close(), f"closing lane {lane.name}")
            lane.channel = None


async def _close_quietly(channel: AbstractChannel) -> None:
    if not channel.is_closed:
        with contextlib.suppress(*CONNECTION_EXCEPTIONS):
            await channel.close()
