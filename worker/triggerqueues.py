"""The unordered trigger queues a worker consumes: one per live unordered trigger.

One channel per queue, with a prefetch of its own (three quarters of the worker's
concurrency, see `queue_share`): a flooded trigger holds at most that many deliveries here,
however deep its backlog, so slots stay free for other triggers' calls, and one
queue's channel error never takes the others down. Which held delivery runs next is
`FairSlots`' turn (worker/fairness.py). The set follows the registry: a new trigger's queue
is consumed as soon as the dispatcher declared it (`tick()` looks again every second), a
deleted or ordered trigger's is let go (the dispatcher empties it into the shared work
queue, see dispatcher/retiring.py). Letting go cancels the consumer at once (unordered:
nothing to keep in order) and closes the channel once its runs in flight have settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from shared.broker.inspection import queue_state
from shared.broker.link import quietly
from shared.errors import BrokerUnavailable
from worker.deliveries import Delivery, RawConsumer

log = logging.getLogger(__name__)

Handler = Callable[[Delivery, str], Awaitable[None]]


@dataclass
class QueueConsumer:
    """One trigger queue and, while consumed, its channel and consumer."""

    name: str
    prefetch: int
    channel: AbstractRobustChannel | None = None
    consumer: RawConsumer | None = None
    consumed_with: int = 0  # the prefetch its channel has
    inflight: int = 0
    closing: bool = False


class TriggerQueues:
    """Keeps one consumer per wanted trigger queue."""

    def __init__(self, connection: AbstractRobustConnection, handler: Handler) -> None:
        self._connection = connection
        self._handler = handler
        self._queues: dict[str, QueueConsumer] = {}
        self._leaving: dict[str, QueueConsumer] = {}
        self._lock = asyncio.Lock()
        self.stopping = False

    @property
    def consumed(self) -> list[str]:
        """The queues consumed now."""
        return sorted(name for name, q in self._queues.items() if q.channel is not None)

    async def sync(self, wanted: dict[str, int]) -> None:
        """Follow the registry: consume new trigger queues (queue -> prefetch), let go of the
        ones gone. A changed prefetch applies once the queue has no run in flight."""
        async with self._lock:
            for name in sorted(self._queues.keys() - wanted.keys()):
                await self._let_go(self._queues.pop(name))
            for name, prefetch in sorted(wanted.items()):
                self._queues.setdefault(name, QueueConsumer(name, prefetch)).prefetch = prefetch
        await self.tick()

    async def tick(self) -> None:
        """Consume the queues not consumed yet (declared since), close what was let go."""
        async with self._lock:
            for queue in list(self._queues.values()):
                if self.stopping:
                    return
                if queue.channel is not None and queue.consumed_with != queue.prefetch and not queue.inflight:
                    await self._recycle(queue)
                if queue.channel is not None:
                    continue
                try:
                    if await queue_state(self._connection, queue.name) is not None:
                        await self._consume(queue)
                except (*CONNECTION_EXCEPTIONS, BrokerUnavailable) as exc:
                    log.info(
                        "trigger queue %s not ready (%s)",
                        queue.name,
                        type(exc).__name__,
                        extra={"queue": queue.name},
                    )

    async def _consume(self, queue: QueueConsumer) -> None:
        channel = await self._connection.channel()

        async def on_message(message: Delivery) -> None:
            if queue.closing or self.stopping:
                return  # not started: back to the queue when the channel closes
            queue.inflight += 1
            try:
                await self._handler(message, queue.name)
            finally:
                queue.inflight -= 1
            await self._close_if_let_go(queue)

        prefetch = queue.prefetch
        queue.closing = False  # before the first delivery can arrive
        try:
            await channel.set_qos(prefetch_count=prefetch)
            consumer = RawConsumer(channel, queue.name, on_message)
            await consumer.start()
        except BaseException:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                if not channel.is_closed:
                    await channel.close()
            raise
        queue.channel, queue.consumer, queue.consumed_with = channel, consumer, prefetch
        log.info("consuming trigger queue %s", queue.name, extra={"queue": queue.name, "prefetch": prefetch})

    async def _recycle(self, queue: QueueConsumer) -> None:
        # Idle (nothing in flight): cancel, close, and the tick consumes it again with the new
        # prefetch. Deliveries sent but not started go back to the head of the queue.
        await self._let_go(queue)

    async def _let_go(self, queue: QueueConsumer) -> None:
        queue.closing = True
        if queue.consumer is not None:
            await queue.consumer.cancel()
        if queue.inflight == 0:
            await self._close(queue)
        else:
            self._leaving[queue.name] = queue  # closed by its last run, once settled

    async def _close_if_let_go(self, queue: QueueConsumer) -> None:
        # Let go while its last run was in flight: closed now that it settled.
        if queue.closing and queue.inflight == 0 and not self.stopping:
            await self._close(queue)

    async def _close(self, queue: QueueConsumer) -> None:
        self._leaving.pop(queue.name, None)
        if queue.consumer is not None:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await queue.consumer.flush()  # coalesced acks go out before the close
        channel, queue.channel, queue.consumer = queue.channel, None, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await channel.close()
            log.info("stopped consuming trigger queue %s", queue.name, extra={"queue": queue.name})

    async def cancel(self) -> None:
        """Shutdown, first step: stop every consumer; runs in flight go on."""
        self.stopping = True
        for queue in (*self._queues.values(), *self._leaving.values()):
            if queue.consumer is not None:
                await queue.consumer.cancel()

    async def close(self) -> None:
        """Shutdown, last step: send coalesced acks, close every channel."""
        for queue in (*self._queues.values(), *self._leaving.values()):
            if queue.consumer is not None:
                await quietly(queue.consumer.flush(), f"sending the acks of {queue.name}")
            channel, queue.channel, queue.consumer = queue.channel, None, None
            if channel is not None and not channel.is_closed:
                await quietly(channel.close(), f"closing the channel of {queue.name}")
