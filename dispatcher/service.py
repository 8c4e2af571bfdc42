"""The dispatcher: keeps RabbitMQ's topology in line with the trigger registry.

It reconciles on start, on every registry notification and after every reconnect to the
broker (a broker that lost its definitions gets them back). It never touches messages.
"""

from __future__ import annotations

import asyncio
import logging

from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from dispatcher.reconcile import Reconciler, desired_topology
from shared.broker import BrokerLink
from shared.db.notify import follow
from shared.db.pool import create_pool
from shared.db.registry import trigger_states
from shared.settings import Settings

log = logging.getLogger(__name__)


class Dispatcher:
    """One dispatcher process (several may run: reconciling is idempotent)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = asyncio.Event()
        self._broker = BrokerLink(settings.amqp_url, "hookline-dispatcher", settings.heartbeat)
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        """Reconcile until `stop()`."""
        self._pool = await create_pool(self.settings.database_url, min_size=1, max_size=2)
        self._broker.on_connect(self._on_connect)
        await self._broker.start()
        follower = asyncio.create_task(self._follow(), name="registry")
        await self._stop.wait()
        follower.cancel()
        await self._broker.close()
        await self._pool.close()

    def stop(self) -> None:
        """Ask `run()` to finish (safe from a signal handler)."""
        self._stop.set()

    async def _on_connect(self, connection: AbstractRobustConnection) -> None:
        self._reconciler = Reconciler(connection, self.settings.amqp_prefix)
        connection.reconnect_callbacks.add(lambda *_: asyncio.ensure_future(self.reconcile()))

    async def _follow(self) -> None:
        await self._broker.wait_ready()
        await follow(self.settings.database_url, self.reconcile)

    async def reconcile(self) -> None:
        """Bring the broker in line with the registry now."""
        async with self._lock:
            async with self._pool.acquire() as connection:
                states = await trigger_states(connection)
            desired = desired_topology(
                states,
                self.settings.amqp_prefix,
                self.settings.work_queue_max_length,
                self.settings.delivery_limit,
            )
            try:
                await self._reconciler.apply(desired)
            except CONNECTION_EXCEPTIONS as exc:
                # The broker went away mid-way; the reconnect callback runs us again.
                log.warning("reconcile interrupted (%s)", type(exc).__name__)
