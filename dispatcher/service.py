"""The dispatcher: keeps RabbitMQ's topology in line with the trigger registry.

It reconciles on start, on every registry notification and after every reconnect to the
broker (a broker that lost its definitions gets them back), and every second while an old
lane layout drains, to delete it once empty. It never runs messages; it moves dead letters
from their queue into PostgreSQL (dispatcher/deadletters.py), and one dispatcher at a time
publishes the scheduled triggers' ticks (dispatcher/schedules.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from dispatcher.deadletters import move_forever
from dispatcher.holds import delete_if_empty, release_held
from dispatcher.metrics import sample_forever
from dispatcher.reconcile import Reconciler, Topology, desired_topology, layout_changes
from dispatcher.retention import sweep_forever
from dispatcher.retiring import empty_into_work
from dispatcher.schedules import ScheduleLeader
from shared.broker.inspection import queue_state
from shared.broker.link import BrokerLink
from shared.db import locks
from shared.db.lanes import delete_layout, load_layouts, save_layouts, trigger_shapes
from shared.db.notify import follow
from shared.db.pauses import forget_resumed, pause_states
from shared.db.pool import DB_ERRORS, open_pool
from shared.errors import BrokerUnavailable
from shared.runtime.heartbeats import Heartbeat
from shared.runtime.probes import database_ready, start_probes
from shared.settings import Settings
from shared.wire import topology
from shared.wire.topology import LaneLayout

log = logging.getLogger(__name__)

_LOCK = locks.RECONCILE  # one dispatcher reconciles at a time across processes
# A publish routed just before its layout was unbound may still be on its way into the
# queue (quorum queues enqueue asynchronously); give it this long before judging "empty".
DRAIN_SETTLE_SECONDS = 2.0


class Dispatcher:
    """One dispatcher process (several may run: they take turns under an advisory lock)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = asyncio.Event()
        self._broker = BrokerLink(settings.amqp_url, "hookline-dispatcher", settings.heartbeat)
        self._lock = asyncio.Lock()
        self._reconciler: Reconciler | None = None
        self._after_reconnect: asyncio.Future[None] | None = None
        self._draining: dict[LaneLayout, float] = {}  # layout -> when first seen draining
        self._resumed: dict[tuple[str, str], float] = {}  # trigger -> when its key left the hold queue
        self._retiring: dict[str, float] = {}  # trigger queue -> when its key was unbound
        self._reconciled = asyncio.Event()  # set once the topology (the dead-letter queue too) exists
        self._schedules = ScheduleLeader(settings, self._broker)

    async def run(self) -> None:
        """Reconcile until `stop()`; what opened closes in reverse order, also on a failed start."""
        async with contextlib.AsyncExitStack() as resources:
            self._pool = await resources.enter_async_context(
                open_pool(self.settings.database_url, min_size=1, max_size=4)
            )
            probes = await start_probes(
                "dispatcher",
                self.settings.host,
                self.settings.metrics_port,
                self._checks,
                self.settings.metrics_token,
            )
            if probes is not None:
                resources.push_async_callback(probes.stop)
            self._broker.on_connect(self._on_connect)
            resources.push_async_callback(self._broker.close)
            await self._broker.start()
            heartbeat = Heartbeat(
                self._pool, "dispatcher", self._checks, lambda: probes.port if probes else None
            )
            heartbeat.start()
            resources.push_async_callback(heartbeat.stop)
            tasks = [
                asyncio.create_task(self._follow(), name="registry"),
                asyncio.create_task(self._drain_loop(), name="drain"),
                asyncio.create_task(self._move_dead_letters(), name="dead-letters"),
                asyncio.create_task(sweep_forever(self._pool, self.settings), name="retention"),
                asyncio.create_task(self._lead_schedules(), name="schedules"),
            ]
            if probes is not None:
                tasks.append(asyncio.create_task(self._sample_queues(), name="queue-depths"))
            resources.push_async_callback(_cancelled, tasks)
            await self._stop.wait()

    async def _sample_queues(self) -> None:
        await self._broker.wait_ready()
        assert self._broker.connection is not None
        await sample_forever(self._broker.connection, self._pool, self.settings.amqp_prefix)

    async def _move_dead_letters(self) -> None:
        await self._reconciled.wait()
        await move_forever(self._broker, self._pool, self.settings.amqp_prefix)

    async def _lead_schedules(self) -> None:
        await self._reconciled.wait()  # ticks go where the triggers' calls go: routed first
        await self._schedules.run()

    async def _checks(self) -> dict[str, bool]:
        return {"broker": self._broker.ready, "database": await database_ready(self._pool)}

    def stop(self) -> None:
        """Ask `run()` to finish (safe from a signal handler)."""
        self._stop.set()

    async def _on_connect(self, connection: AbstractRobustConnection) -> None:
        self._reconciler = reconciler = Reconciler(
            connection, self.settings.amqp_prefix, nodes=len(self.settings.amqp_urls)
        )

        def reconnected(*_: object) -> None:
            reconciler.forget()  # a restarted broker may have lost what was declared
            self._after_reconnect = asyncio.ensure_future(self._reconcile_logged())

        connection.reconnect_callbacks.add(reconnected)

    async def _reconcile_logged(self) -> None:
        try:
            await self.reconcile()
        except DB_ERRORS as exc:
            # The registry listener reconciles again once PostgreSQL is back.
            log.warning("reconcile after reconnect failed (%s)", type(exc).__name__)

    async def _follow(self) -> None:
        await self._broker.wait_ready()
        await follow(self.settings.database_url, self.reconcile)

    async def reconcile(self) -> None:
        """Bring the layouts and the broker in line with the registry now."""
        async with self._lock, self._pool.acquire() as connection:
            await connection.execute("select pg_advisory_lock($1)", _LOCK)
            try:
                shapes = await trigger_shapes(connection)
                pauses = {(p.workspace, p.trigger): p.resumed for p in await pause_states(connection)}
                layouts = await load_layouts(connection)
                changes = layout_changes(shapes, layouts)
                if changes.drain or changes.create:
                    # Recorded before the broker changes: a crash in between is repaired
                    # by the next reconcile, which declares and unbinds from these rows.
                    await save_layouts(connection, list(changes.drain), list(changes.create))
                    layouts = await load_layouts(connection)
                    log.info(
                        "lane layouts changed",
                        extra={"draining": len(changes.drain), "new": len(changes.create)},
                    )
                desired = desired_topology(
                    shapes,
                    layouts,
                    self.settings.amqp_prefix,
                    self.settings.work_queue_max_length,
                    self.settings.delivery_limit,
                    pauses,
                    self.settings.trigger_queue_max_length,
                )
                self._track_draining(layouts)
                if self._reconciler is None:
                    return
                try:
                    await self._reconciler.apply(desired)
                    self._reconciled.set()
                    self._schedules.registry_changed()  # routed: a new schedule's ticks find their queue
                    self._track_resumed(pauses)
                    await self._track_retiring(desired)
                except (*CONNECTION_EXCEPTIONS, BrokerUnavailable) as exc:
                    # The broker went away mid-way; the reconnect callback runs us again.
                    log.warning("reconcile interrupted (%s)", type(exc).__name__)
            finally:
                await connection.execute("select pg_advisory_unlock($1)", _LOCK)

    def _track_draining(self, layouts: list[LaneLayout]) -> None:
        now = time.monotonic()
        self._draining = {x: self._draining.get(x, now) for x in layouts if x.draining}

    def _track_resumed(self, pauses: dict[tuple[str, str], bool]) -> None:
        # Recorded only once the key is bound back: from then on nothing new reaches the hold queue.
        now = time.monotonic()
        self._resumed = {t: self._resumed.get(t, now) for t, resumed in pauses.items() if resumed}

    async def _track_retiring(self, desired: Topology) -> None:
        # Only the retiring queues that exist: a trigger deleted long ago has none left.
        connection = self._broker.connection
        assert connection is not None
        now = time.monotonic()
        existing = [q for q in desired.retiring if q in self._retiring or await queue_state(connection, q)]
        self._retiring = {q: self._retiring.get(q, now) for q in existing}

    async def _retire(self) -> None:
        """Empty retiring trigger queues into the work queue; delete each once settled and empty."""
        connection = self._broker.connection
        assert connection is not None
        work = topology.work_queue_name(self.settings.amqp_prefix)
        async with self._lock:
            for queue, since in list(self._retiring.items()):
                await empty_into_work(connection, queue, work)
                if time.monotonic() - since >= DRAIN_SETTLE_SECONDS and await delete_if_empty(
                    connection, queue
                ):
                    self._retiring.pop(queue, None)
                    log.info("retired trigger queue deleted", extra={"queue": queue})

    async def _release_resumed(self) -> None:
        """Move what resumed triggers' hold queues kept; delete each once settled and empty."""
        connection = self._broker.connection
        assert connection is not None
        async with self._lock:  # a pause coming back in between is seen by the next round
            for (workspace, trigger), since in list(self._resumed.items()):
                queue = topology.hold_queue_name(self.settings.amqp_prefix, workspace, trigger)
                await release_held(connection, queue)
                settled = time.monotonic() - since >= DRAIN_SETTLE_SECONDS
                if not settled or not await delete_if_empty(connection, queue):
                    continue
                async with self._pool.acquire() as db:
                    await forget_resumed(db, workspace, trigger)
                self._resumed.pop((workspace, trigger), None)
                log.info("resume carried out", extra={"workspace": workspace, "trigger": trigger})

    async def _drain_loop(self) -> None:
        """Every second, delete the draining layouts that have emptied."""
        while True:
            await asyncio.sleep(1)
            ready = [
                x for x, seen in self._draining.items() if time.monotonic() - seen >= DRAIN_SETTLE_SECONDS
            ]
            if not (ready or self._resumed or self._retiring) or self._reconciler is None:
                continue
            if not self._broker.ready:
                continue
            try:
                await self._release_resumed()
                await self._retire()
                if ready:
                    await self._drain(ready)
            except (*CONNECTION_EXCEPTIONS, BrokerUnavailable) as exc:
                log.warning("drain check failed (%s); trying again", type(exc).__name__)
            except DB_ERRORS as exc:
                log.warning("drain check failed (%s); trying again", type(exc).__name__)

    async def _drain(self, layouts: list[LaneLayout]) -> None:
        assert self._reconciler is not None
        async with self._lock, self._pool.acquire() as connection:
            await connection.execute("select pg_advisory_lock($1)", _LOCK)
            try:
                for layout in layouts:
                    if await self._reconciler.delete_layout(layout):
                        await delete_layout(connection, layout)
                        self._draining.pop(layout, None)
            finally:
                await connection.execute("select pg_advisory_unlock($1)", _LOCK)


async def _cancelled(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
