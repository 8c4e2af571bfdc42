"""The schedule leader: one dispatcher at a time publishes the scheduled triggers' ticks.

Whichever dispatcher holds the SCHEDULES advisory lock (session-level, on a database
connection of its own) leads; the others try for it every second and take over once the
leader's session ends (its process died, its connection broke). Each due row is locked, its
ticks published with confirms into the trigger's own route (its queue or ordered lane, as a
call would be: flow control and ordering apply), then advanced, in one transaction on that
connection. A leader that dies between a confirm and the commit leaves the tick due: the
next leader publishes it again under the same execution id (derived from the tick), and
workers run one copy of it (worker/consumer.py, `claim_execution`). A leader that lost its
connection lost its lock with it, and finds out at its next statement (at least every
second: every statement has a deadline).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from prometheus_client import Counter, Gauge

from shared.broker.link import BrokerLink, quietly
from shared.broker.publishers import ConfirmedPublisher, NotRouted, QueueFull, open_confirm_channel
from shared.db import locks
from shared.db.pool import DB_ERRORS, init_connection
from shared.db.schedules import (
    STATEMENT_SECONDS,
    DueSchedule,
    advance,
    claim_due,
    next_due_at,
    schedule_from_json,
    sync_schedules,
    trigger_of,
)
from shared.errors import BrokerUnavailable
from shared.settings import Settings
from shared.spec.model import OrderingKey, Trigger
from shared.spec.schedule import SCHEDULE_METHOD, due_ticks, next_tick, tick_execution_id, tick_text
from shared.wire import topology
from shared.wire.amqp import invocation_properties
from shared.wire.messages import Invocation, RequestData, invocation_encoder
from shared.wire.ordering import compile_key, ordering_key_value

log = logging.getLogger(__name__)

STANDBY_SECONDS = 1.0  # how often a standby tries to take the lead
IDLE_SECONDS = 1.0  # the longest wait between passes (a registry change wakes the leader sooner)
SYNC_SECONDS = 60.0  # the registry is read again at least this often
RETRY_SECONDS = 2.0  # a row whose publish was refused waits this long; the others go first
TICKS_PER_COMMIT = 100  # a long catch-up is committed in steps
ROWS_PER_PASS = 100
_MIN_WAIT = 0.01

# Outages that end a term (the lock goes with the connection); the next one starts over.
FAILURES: tuple[type[BaseException], ...] = (*DB_ERRORS, asyncpg.PostgresError, *CONNECTION_EXCEPTIONS)

TICKS = Counter("hookline_schedule_ticks_total", "Schedule ticks published by this process", ["workspace"])
LEADING = Gauge("hookline_schedule_leader", "1 while this process publishes the schedules' ticks")


class ScheduleLeader:
    """Leads (or stands by for) the publishing of ticks, until cancelled."""

    def __init__(
        self, settings: Settings, broker: BrokerLink, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._clock = clock
        self._changed = asyncio.Event()
        self.leading = False

    def registry_changed(self) -> None:
        """A trigger changed: read the schedules again before the next pass."""
        self._changed.set()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def run(self) -> None:
        """Stand by, lead, and start over after an outage, until cancelled."""
        await self._broker.wait_ready()
        while True:
            try:
                await self._term()
            except FAILURES as exc:
                log.warning("schedules: database or broker lost (%s); standing by", type(exc).__name__)
            except Exception:  # a bug must not stop every schedule for good: logged, starts over
                log.exception("schedules: the leader failed; starting over")
            finally:
                self.leading = False
                LEADING.set(0)
            await asyncio.sleep(STANDBY_SECONDS)

    async def _term(self) -> None:
        connection = await asyncpg.connect(self._settings.database_url, timeout=10)
        try:
            await init_connection(connection)
            standing_by = False
            while not await connection.fetchval(
                "select pg_try_advisory_lock($1)", locks.SCHEDULES, timeout=STATEMENT_SECONDS
            ):
                if not standing_by:
                    log.info("schedules: standing by (another dispatcher leads)")
                    standing_by = True
                await asyncio.sleep(STANDBY_SECONDS)
            self.leading = True
            LEADING.set(1)
            log.info("schedules: leading")
            await self._lead(connection)
        finally:
            await _close(connection)

    async def _lead(self, connection: asyncpg.Connection) -> None:
        robust = self._broker.connection
        assert robust is not None  # wait_ready
        channel = await open_confirm_channel(robust)
        exchange = topology.invocations_exchange(self._settings.amqp_prefix)
        publisher = ConfirmedPublisher(channel, exchange, self._settings.publish_timeout)
        sync_at = 0.0
        self._changed.set()
        try:
            while True:
                if self._changed.is_set() or time.monotonic() >= sync_at:
                    self._changed.clear()
                    async with connection.transaction():
                        await sync_schedules(connection, self._now())
                    sync_at = time.monotonic() + SYNC_SECONDS
                if self._broker.ready and not await self._publish_due(connection, publisher):
                    await asyncio.sleep(STANDBY_SECONDS)  # the broker is away: a moment
                await self._wait(connection)
        finally:
            await quietly(channel.close(), "closing the schedules channel")

    async def _wait(self, connection: asyncpg.Connection) -> None:
        """Until the next row falls due (at most IDLE_SECONDS), or the registry changes."""
        wake = await next_due_at(connection)
        delay = IDLE_SECONDS
        if wake is not None:
            delay = min(IDLE_SECONDS, max(_MIN_WAIT, (wake - self._now()).total_seconds()))
        try:
            async with asyncio.timeout(delay):
                await self._changed.wait()
        except TimeoutError:
            pass

    async def _publish_due(self, connection: asyncpg.Connection, publisher: ConfirmedPublisher) -> bool:
        """Publish what is due, row by row; False when the broker stopped confirming."""
        for _ in range(ROWS_PER_PASS):
            now = self._now()
            async with connection.transaction():
                due = await claim_due(connection, now)
                if due is None:
                    return True
                if not await self._publish_row(connection, publisher, due, now):
                    return False
        return True

    async def _publish_row(
        self, connection: asyncpg.Connection, publisher: ConfirmedPublisher, due: DueSchedule, now: datetime
    ) -> bool:
        """Publish a locked row's due ticks and advance it; False when the broker is away."""
        where = _ids(due)
        try:
            schedule = schedule_from_json(due.schedule)
            trigger = trigger_of(due)
        except ValueError:
            log.exception("schedules: a stored schedule cannot be read; skipped for now", extra=where)
            later = now + timedelta(seconds=SYNC_SECONDS)
            await advance(connection, due, due.next_at, None, retry_at=later, error="cannot be read")
            return True
        ticks = due_ticks(schedule, due.next_at, now)
        if not ticks or ticks[0] != due.next_at:
            log.info("schedules: missed ticks skipped (catch_up: %s)", schedule.catch_up, extra=where)
        batch = ticks[:TICKS_PER_COMMIT]
        last = None
        for tick in batch:
            try:
                await self._publish_tick(publisher, due, trigger, tick)
            except (QueueFull, NotRouted) as exc:
                # This trigger's queue only: it waits, the others go on.
                log.warning(
                    "schedules: tick not published (%s); again in %.0f s", exc, RETRY_SECONDS, extra=where
                )
                later = now + timedelta(seconds=RETRY_SECONDS)
                await advance(connection, due, tick, last, retry_at=later, error=str(exc))
                return True
            except BrokerUnavailable as exc:
                log.warning("schedules: tick not published (%s)", exc, extra=where)
                await advance(connection, due, tick, last)
                return False
            last = tick
        next_at = ticks[len(batch)] if len(ticks) > len(batch) else next_tick(schedule, now)
        await advance(connection, due, next_at, last)
        return True

    async def _publish_tick(
        self, publisher: ConfirmedPublisher, due: DueSchedule, trigger: Trigger, tick: datetime
    ) -> None:
        request = RequestData(
            method=SCHEDULE_METHOD, path=f"/hooks/{due.workspace}/{due.trigger}", scheduled_at=tick_text(tick)
        )
        invocation = Invocation(
            id=tick_execution_id(due.workspace, due.trigger, tick),
            workspace=due.workspace,
            trigger=due.trigger,
            version=due.version,
            mode=trigger.mode,
            received_at=self._clock(),
            request=request,
        )
        ordered = trigger.ordered
        key = (
            ordering_key_value(compile_key(ordered.key), request)
            if isinstance(ordered, OrderingKey)
            else None
        )
        await publisher.publish(
            invocation_encoder.encode(invocation),
            invocation_properties(invocation.id, ordering_key=key),
            topology.routing_key(due.workspace, due.trigger),
        )
        TICKS.labels(due.workspace).inc()
        log.info(
            "schedules: tick published",
            extra={**_ids(due), "execution_id": invocation.id, "scheduled_at": request.scheduled_at},
        )


def _ids(due: DueSchedule) -> dict[str, str]:
    return {"workspace": due.workspace, "trigger": due.trigger}


async def _close(connection: asyncpg.Connection) -> None:
    """Close the leader's connection (its lock goes with it); a dead one is cut off."""
    try:
        await connection.close(timeout=5)
    except FAILURES:
        connection.terminate()
    except asyncio.CancelledError:
        connection.terminate()
        raise
