"""The worker: consumes the shared queue and every ordered lane, runs, records, replies.

`run()` returns after `stop()`; stopping goes in a fixed order (see `stop`). Ordered lanes
follow the registry: one channel per lane with prefetch 1, so a lane's channel error
never takes the other lanes down and each lane holds one message at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from shared import topology
from shared.broker import BrokerLink
from shared.db.notify import follow
from shared.db.pool import create_pool
from shared.db.registry import load_registry
from shared.settings import Settings
from worker.connections import Connections
from worker.consumer import Lane, Runner
from worker.recorder import Recorder
from worker.workflows import WorkflowCache

log = logging.getLogger(__name__)


class Worker:
    """One worker process: `concurrency` shared runs at once, ordered lanes one at a time each."""

    def __init__(self, settings: Settings, concurrency: int, shutdown_grace: float = 30.0) -> None:
        self.settings = settings
        self.concurrency = concurrency
        self.shutdown_grace = shutdown_grace
        self._stop = asyncio.Event()
        self._broker = BrokerLink(settings.amqp_url, "hookline-worker", settings.heartbeat)
        self._lanes: dict[str, tuple[AbstractChannel, AbstractQueue, str]] = {}
        self._shared: tuple[AbstractChannel, AbstractQueue, str] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._lanes_lock = asyncio.Lock()
        self._missing = False

    async def run(self) -> None:
        """Consume until `stop()`."""
        self._pool = await create_pool(self.settings.database_url, min_size=1, max_size=4)
        self._recorder = Recorder(self._pool)
        self._recorder.start()
        self._connections = Connections(self._pool)
        self._connections.start(self.settings.database_url)
        self._broker.on_connect(self._on_connect)
        await self._broker.start()
        follower = asyncio.create_task(self._follow_registry(), name="registry")
        await self._stop.wait()
        follower.cancel()
        await self._shutdown()

    def stop(self) -> None:
        """Ask `run()` to finish (safe from a signal handler)."""
        self._stop.set()

    async def _on_connect(self, connection: AbstractRobustConnection) -> None:
        replies = await connection.channel(publisher_confirms=False)
        workflows = WorkflowCache(self._pool, self._connections, self.settings.step_output_limit)
        self._runner = Runner(workflows, self._recorder, replies.default_exchange)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=self.concurrency)
        queue = await self._wait_for_queue(channel, topology.work_queue_name(self.settings.amqp_prefix))
        tag = await queue.consume(self._consumer(Lane.SHARED))
        self._shared = (channel, queue, tag)
        log.info("consuming %s", queue.name, extra={"queue": queue.name})

    async def _wait_for_queue(self, channel: AbstractChannel, name: str) -> AbstractQueue:
        # The dispatcher declares queues; a worker started first waits for it.
        while True:
            try:
                return await channel.get_queue(name, ensure=True)
            except CONNECTION_EXCEPTIONS:
                log.info("waiting for queue %s (is the dispatcher running?)", name)
                await asyncio.sleep(1)
                if channel.is_closed:
                    await channel.reopen()

    def _consumer(self, lane: Lane):  # type: ignore[no-untyped-def]
        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._inflight.add(task)
            try:
                await self._runner.handle(message, lane)
            finally:
                self._inflight.discard(task)

        return on_message

    async def _follow_registry(self) -> None:
        await self._broker.wait_ready()
        follower = asyncio.create_task(follow(self.settings.database_url, self._sync_lanes))
        try:
            while True:
                await asyncio.sleep(1)
                if self._missing:
                    await self._sync_lanes()
        finally:
            follower.cancel()

    async def _sync_lanes(self) -> None:
        """Consume every ordered trigger's queue, and stop consuming removed ones."""
        async with self._pool.acquire() as connection:
            rows = await load_registry(connection)
        prefix = self.settings.amqp_prefix
        wanted = {
            topology.ordered_queue_name(prefix, r.workspace, r.name)
            for r in rows
            if r.spec.ordered is not False
        }
        async with self._lanes_lock:
            self._missing = False
            for name in sorted(wanted - self._lanes.keys()):
                await self._add_lane(name)
            for name in sorted(self._lanes.keys() - wanted):
                channel, queue, tag = self._lanes.pop(name)
                await queue.cancel(tag)
                await channel.close()

    async def _add_lane(self, name: str) -> None:
        connection = self._broker.connection
        assert connection is not None
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1)
        try:
            queue = await channel.get_queue(name, ensure=True)
        except CONNECTION_EXCEPTIONS:
            # Not declared yet (the dispatcher reacts to the same change): try again soon.
            log.info("ordered queue %s not declared yet", name, extra={"queue": name})
            self._missing = True
            if not channel.is_closed:
                await channel.close()
            return
        tag = await queue.consume(self._consumer(Lane.ORDERED))
        self._lanes[name] = (channel, queue, tag)
        log.info("consuming ordered lane %s", name, extra={"queue": name})

    async def _shutdown(self) -> None:
        # 1. Stop taking new deliveries: cancel every consumer.
        consumers = [*self._lanes.values(), *([self._shared] if self._shared else [])]
        for _, queue, tag in consumers:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await queue.cancel(tag)
        # 2. Let in-flight runs finish (record, reply, ack) within the grace period.
        if self._inflight:
            log.info("waiting for %d in-flight executions", len(self._inflight))
            _, pending = await asyncio.wait(set(self._inflight), timeout=self.shutdown_grace)
            for task in pending:
                task.cancel()
        # 3. Close channels: whatever was not acked goes back to the head of its queue.
        await self._broker.close()
        # 4. Close the recorder, the steps' connections and the pool last: in-flight runs needed them.
        await self._recorder.close()
        await self._connections.close()
        await self._pool.close()
