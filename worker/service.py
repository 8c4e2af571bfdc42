"""The worker: consumes the shared queue, every trigger queue and every ordered lane, runs,
records, replies.

`run()` returns after `stop()`; stopping goes in a fixed order (see `_shutdown`). Ordered
lanes follow the lane layouts the dispatcher writes (LISTEN `hookline_lanes`), see
worker/lanes.py; trigger queues and flow limits follow the registry (LISTEN
`hookline_registry`), see worker/triggerqueues.py and worker/flow.py. Unordered runs share
the worker's `concurrency` slots fairly across queues (worker/fairness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from shared.broker.link import BrokerLink, quietly
from shared.broker.publishers import ConfirmedPublisher, ReplyPublisher, open_confirm_channel
from shared.db.flow import unordered_triggers
from shared.db.lanes import LANES_CHANNEL, load_layouts
from shared.db.notify import REGISTRY_CHANNEL, follow
from shared.db.pauses import paused_triggers
from shared.db.pool import DB_ERRORS, open_pool
from shared.db.retry import retry_db
from shared.db.secrets import cipher_from
from shared.runtime.heartbeats import Heartbeat
from shared.runtime.probes import database_ready, start_probes
from shared.settings import Settings
from shared.spec.egress import operator_allow
from shared.wire import topology
from worker.checkpoints import CheckpointStore
from worker.consumer import Lane, Runner
from worker.deliveries import Delivery, RawConsumer
from worker.execution import Reporter
from worker.fairness import FairSlots
from worker.flow import Flow, FlowGate, flow_from_spec
from worker.holds import Abandoned, LaneHolds
from worker.idle import until_idle
from worker.lanes import LaneSet
from worker.recorder import Recorder
from worker.resources import Connections
from worker.triggerqueues import TriggerQueues
from worker.watchdog import Watchdog
from worker.workflows import WorkflowCache

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0


def queue_share(concurrency: int) -> int:
    """The run slots one unordered queue may hold (its prefetch): three quarters of the
    worker's, at least one, so a flooded trigger always leaves slots free for the others and
    a call of a quiet trigger starts at once instead of waiting for a flooded one's run to end."""
    return max(1, concurrency - concurrency // 4)


class Worker:
    """One worker process: `concurrency` shared runs at once, ordered lanes one at a time each."""

    def __init__(self, settings: Settings, concurrency: int, shutdown_grace: float = 30.0) -> None:
        self.settings = settings
        self.concurrency = concurrency
        self.shutdown_grace = shutdown_grace
        self._stop = asyncio.Event()
        self._broker = BrokerLink(settings.amqp_url, "hookline-worker", settings.heartbeat)
        self._shared: RawConsumer | None = None
        self._channels: list[AbstractChannel] = []
        self._lanes: LaneSet | None = None
        self._queues: TriggerQueues | None = None
        self._queue_triggers: dict[str, tuple[str, str]] = {}  # trigger queue -> (workspace, trigger)
        self._fair = FairSlots(concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._paused: set[tuple[str, str]] = set()  # shared with the runner, updated in place
        self._watchdog = Watchdog(settings.watchdog_margin, settings.watchdog_limit, self._database_away)
        self._started = asyncio.Event()  # run() consumes (what `run_until_idle` waits for first)

    async def run(self) -> None:
        """Consume until `stop()`.

        Resources open in the order below and close in the reverse order, also when one
        of them fails to open: the steps' connections and the recorder outlive every run,
        and the broker goes (after the drain, see `_shutdown`) before the heartbeat says so.
        """
        egress_allow = operator_allow(self.settings.egress_allow)  # a malformed setting stops here
        async with contextlib.AsyncExitStack() as resources:
            self._pool = await resources.enter_async_context(
                open_pool(self.settings.database_url, min_size=1, max_size=4)
            )
            self._connections = Connections(
                self._pool, egress_allow=egress_allow, cipher=cipher_from(self.settings.secrets_key)
            )
            self._connections.start(self.settings.database_url)
            resources.push_async_callback(self._connections.close)
            self._gate = FlowGate(self._pool, self.settings.flow_lease_seconds, self._stop)
            self._recorder = Recorder(self._pool)
            self._recorder.start()
            resources.push_async_callback(self._recorder.close)
            probes = await start_probes(
                "worker",
                self.settings.host,
                self.settings.metrics_port,
                self._checks,
                self.settings.metrics_token,
            )
            if probes is not None:
                resources.push_async_callback(probes.stop)
            heartbeat = Heartbeat(self._pool, "worker", self._checks, lambda: probes.port if probes else None)
            heartbeat.start()
            resources.push_async_callback(heartbeat.stop)
            self._broker.on_connect(self._on_connect)
            resources.push_async_callback(self._shutdown)
            await self._broker.start()
            # The lane layouts are read once before anything runs: a database that refuses
            # them ends the start-up here (and unwinds it) instead of leaving lanes unknown.
            # (A database outage is waited out; a stop() while waiting ends the start-up.)
            if not await self._unless_stopped(self._broker.wait_ready()):
                return
            if not await self._unless_stopped(retry_db(self._sync_lanes)):
                return
            if not await self._unless_stopped(retry_db(self._sync_triggers)):
                return
            follower = asyncio.create_task(self._follow_lanes(), name="lanes")
            resources.push_async_callback(_cancelled, follower)
            triggers = asyncio.create_task(self._follow_triggers(), name="trigger-queues")
            resources.push_async_callback(_cancelled, triggers)
            renewals = asyncio.create_task(self._gate.renew_forever(), name="flow-leases")
            resources.push_async_callback(_cancelled, renewals)
            watchdog = asyncio.create_task(self._watchdog.run(), name="watchdog")
            resources.push_async_callback(_cancelled, watchdog)
            self._started.set()
            await self._stop.wait()

    async def _unless_stopped(self, work: Coroutine[Any, Any, object]) -> bool:
        """Await `work` unless `stop()` comes first (then cancel it); whether it finished."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if task.done():
            task.result()  # its error, if any, ends the start-up
            return True
        await _cancelled(task)
        return False

    async def _checks(self) -> dict[str, bool]:
        return {
            "broker": self._broker.ready,
            "database": await database_ready(self._pool),
            # False once the watchdog had to settle a delivery a run held too long: something
            # in this process hangs; restart it.
            "deliveries": self._watchdog.healthy,
        }

    async def _database_away(self) -> bool:
        # A connection of its own: the pool may be what hangs.
        try:
            connection = await asyncpg.connect(self.settings.database_url, timeout=2)
        except (*DB_ERRORS, asyncpg.PostgresError):  # type: ignore[misc]
            return True
        try:
            await connection.execute("select 1", timeout=2)
        except (*DB_ERRORS, asyncpg.PostgresError):  # type: ignore[misc]
            return True
        finally:
            with contextlib.suppress(*DB_ERRORS):
                await connection.close(timeout=2)
        return False

    def stop(self) -> None:
        """Ask `run()` to finish (safe from a signal handler)."""
        self._stop.set()

    async def run_until_idle(self) -> None:
        """Run until nothing is left to do, then stop as `stop()` does (arq's burst mode).

        Nothing left: the queues this worker reads hold no ready message and no run is in
        flight (worker/idle.py). A retry waiting in a delay tier counts as queued, since it
        comes back to the work queue; a hold queue does not (it waits for a resume). A lane
        stopped for its operator (`on_exhausted: stop`) is a run in flight until answered.
        For tests: `Runner`, the lanes and the recorder in-process, on the real broker and
        database, once the dispatcher declared the queues. A failed start-up raises.
        """
        running = asyncio.create_task(self.run(), name="worker")
        try:
            await until_idle(
                running, self._started, lambda: self._broker.connection, self._read_queues, self._busy
            )
        finally:
            self.stop()
            await running

    def _read_queues(self) -> list[str]:
        """The queues this worker consumes (the work queue, its trigger queues, its lanes) and the
        retry tiers that flow into the work queue."""
        prefix = self.settings.amqp_prefix
        return [
            topology.work_queue_name(prefix),
            *(self._queues.consumed if self._queues is not None else ()),
            *(topology.retry_queue_name(prefix, tier) for tier in topology.RETRY_TIERS),
            *(self._lanes.queues if self._lanes is not None else ()),
        ]

    def _busy(self) -> bool:
        """Whether a run is in flight (shared or ordered)."""
        return bool(self._inflight) or (self._lanes is not None and self._lanes.busy)

    async def _on_connect(self, connection: AbstractRobustConnection) -> None:
        replies = await connection.channel(publisher_confirms=False)
        delays = await open_confirm_channel(connection)
        self._runner = Runner(
            WorkflowCache(
                self._pool,
                self._connections,
                self.settings.step_output_limit,
                CheckpointStore(self._pool, self.settings.checkpoint_limit),
            ),
            Reporter(
                self._recorder,
                ReplyPublisher(replies, self.settings.publish_timeout),
                self._pool,
                self.settings.step_output_limit,
            ),
            LaneHolds(self._pool, self._stop),
            # Retries to a delay queue (by name, through the default exchange) and parked calls
            # (through the invocations exchange) share one confirm channel.
            ConfirmedPublisher(delays, "", self.settings.publish_timeout),
            ConfirmedPublisher(
                delays,
                topology.invocations_exchange(self.settings.amqp_prefix),
                self.settings.publish_timeout,
            ),
            prefix=self.settings.amqp_prefix,
            delivery_limit=self.settings.delivery_limit,
            stopping=self._stop,
            paused=self._paused,
            watchdog=self._watchdog,
        )
        self._lanes = LaneSet(connection, self.settings.amqp_prefix, self._run_ordered)
        self._queues = TriggerQueues(connection, self._run_unordered)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=queue_share(self.concurrency))
        self._channels = [channel, replies, delays]
        name = topology.work_queue_name(self.settings.amqp_prefix)
        await self._wait_for_queue(channel, name)
        self._shared = RawConsumer(channel, name, self._run_shared)
        await self._shared.start()
        log.info("consuming %s", name, extra={"queue": name})

    async def _wait_for_queue(self, channel: AbstractChannel, name: str) -> None:
        # The dispatcher declares queues; a worker started first waits for it.
        while True:
            try:
                await channel.get_queue(name, ensure=True)
                return
            except CONNECTION_EXCEPTIONS:
                log.info("waiting for queue %s (is the dispatcher running?)", name)
                await asyncio.sleep(1)
                if channel.is_closed:
                    await channel.reopen()

    async def _run_shared(self, message: Delivery) -> None:
        await self._run_unordered(message, topology.work_queue_name(self.settings.amqp_prefix))

    async def _run_unordered(self, message: Delivery, queue: str) -> None:
        """Admitted by the trigger's flow limits, then in the queue's turn for a run slot.

        A trigger queue's name says whose call it is; on the shared work queue the message does.
        """
        if self._stop.is_set():
            return  # not started: it goes back to the queue when the channel closes
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            found, key = self._gate.flow_of(message, self._queue_triggers.get(queue))
            if found is None:  # no flow limits (most triggers): no gate to pass
                await self._in_turn(message, queue)
            else:
                async with self._gate.admitted(found, key):
                    await self._in_turn(message, queue)
        except Abandoned:
            pass  # stopping while it waited: handed back unsettled when the channel closes
        finally:
            self._inflight.discard(task)

    async def _in_turn(self, message: Delivery, queue: str) -> None:
        """Run once a slot of the worker's is free, in `queue`'s turn (worker/fairness.py)."""
        await self._fair.acquire(queue)
        try:
            if not self._stop.is_set():
                await self._runner.handle(message, Lane.SHARED, queue)
        finally:
            self._fair.release()

    async def _run_ordered(self, message: Delivery, queue: str) -> None:
        await self._runner.handle(message, Lane.ORDERED, queue)

    async def _follow_lanes(self) -> None:
        await self._broker.wait_ready()
        follower = asyncio.create_task(follow(self.settings.database_url, self._sync_lanes, LANES_CHANNEL))
        try:
            while True:
                await asyncio.sleep(TICK_SECONDS)
                if self._lanes is not None:
                    await self._lanes.tick()
                if self._queues is not None:
                    await self._queues.tick()
        finally:
            follower.cancel()

    async def _follow_triggers(self) -> None:
        await self._broker.wait_ready()
        await follow(self.settings.database_url, self._sync_triggers, REGISTRY_CHANNEL)

    async def _sync_triggers(self) -> None:
        """Consume the queue of every live unordered trigger; take on their flow limits."""
        async with self._pool.acquire() as connection:
            rows = await unordered_triggers(connection)
        prefix = self.settings.amqp_prefix
        flows: dict[tuple[str, str], Flow] = {}
        queues: dict[str, tuple[str, str]] = {}
        prefetch: dict[str, int] = {}
        for workspace, name, concurrency, throttle in rows:
            queue = topology.trigger_queue_name(prefix, workspace, name)
            queues[queue] = (workspace, name)
            found = flow_from_spec(workspace, name, concurrency, throttle)
            if found is not None:
                flows[(workspace, name)] = found
            prefetch[queue] = (
                found.prefetch(queue_share(self.concurrency)) if found else queue_share(self.concurrency)
            )
        self._gate.update(flows)
        self._queue_triggers = queues
        if self._queues is not None:
            await self._queues.sync(prefetch)

    async def _sync_lanes(self) -> None:
        async with self._pool.acquire() as connection:
            layouts = await load_layouts(connection)
            paused = await paused_triggers(connection)
        # A paused ordered trigger's lanes are let go (once idle): its calls wait there, in order.
        # A paused unordered trigger's calls met on the shared queue go to its hold queue.
        self._paused.clear()
        self._paused.update(paused)
        layouts = [x for x in layouts if (x.workspace, x.trigger) not in paused]
        if self._lanes is not None:
            await self._lanes.sync(layouts)

    async def _drain_shared(self) -> None:
        if not self._inflight:
            return
        log.info("waiting for %d in-flight executions", len(self._inflight))
        _, pending = await asyncio.wait(set(self._inflight), timeout=self.shutdown_grace)
        for task in pending:
            task.cancel()

    async def _shutdown(self) -> None:
        # 0. `stop()` set the event: runs waiting in place (backoff, a stopped lane) give
        #    up their message unsettled, and no delivery that arrives from now on is run.
        # 1. Stop the shared consumer. Ordered lanes are *not* cancelled: that would let
        #    another worker start the lane's next message while this one still runs.
        if self._shared is not None:
            await self._shared.cancel()
        if self._queues is not None:
            await self._queues.cancel()
        # 2. Let in-flight runs finish (record, reply, ack) within the grace period, then
        #    close the lanes' channels.
        await asyncio.gather(
            self._drain_shared(), self._lanes.close(self.shutdown_grace) if self._lanes else asyncio.sleep(0)
        )
        # 3. Close the channels, then the connection: whatever was not acked goes back to the
        #    head of its queue. Acks and replies are written without waiting for the socket;
        #    a channel's close goes out after them, where closing the connection would drop them.
        #    The shared consumer's coalesced acks are sent first.
        if self._shared is not None:
            await quietly(self._shared.flush(), "sending the shared queue's acks")
        if self._queues is not None:
            await self._queues.close()
        for channel in self._channels:
            if not channel.is_closed:
                await quietly(channel.close(), "closing a channel")
        await self._broker.close()
        # 4. Then (run() closes them, in reverse order of opening) the heartbeat, the probes,
        #    the recorder, the steps' connections and the pool: in-flight runs needed them.
        #    Until the heartbeat stops, the worker shows as draining.


async def _cancelled(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
