"""Each service process says it is alive: a row in `service_heartbeats`, renewed every few
seconds with its readiness, read by `hookline status`.

The ingress and every worker and dispatcher process beat, whether or not they serve a
metrics port, so an operator sees what runs without configuring anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from shared.db.pool import DB_ERRORS, Connection
from shared.runtime.cancelling import stop_if_cancelled

log = logging.getLogger(__name__)

BEAT_SECONDS = 5.0
# A row not renewed for this long is shown silent; after FORGET_AFTER it is deleted.
SILENT_AFTER_SECONDS = 3 * BEAT_SECONDS
FORGET_AFTER = datetime.timedelta(minutes=10)

Checks = Callable[[], Awaitable[dict[str, bool]]]


@dataclass(frozen=True)
class ServiceBeat:
    """One service process as its last heartbeat left it."""

    instance: str
    service: str
    started_at: datetime.datetime
    seen_at: datetime.datetime
    ready: bool
    metrics_port: int | None
    silent_seconds: float

    @property
    def state(self) -> str:
        """`up`, `not ready`, or `silent` (no heartbeat for a while: stopped or stuck)."""
        if self.silent_seconds > SILENT_AFTER_SECONDS:
            return "silent"
        return "up" if self.ready else "not ready"


class Heartbeat:
    """Renews this process's row until stopped, then removes it."""

    def __init__(
        self, pool: asyncpg.Pool, service: str, checks: Checks, metrics_port: Callable[[], int | None]
    ) -> None:
        self._pool = pool
        self._service = service
        self._checks = checks
        self._metrics_port = metrics_port
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat_forever(), name=f"{self._service}-heartbeat")

    async def _beat_forever(self) -> None:
        failing = False
        while True:
            try:
                ready = all((await self._checks()).values())
                async with self._pool.acquire(timeout=5) as connection:
                    await beat(connection, self.instance, self._service, ready, self._metrics_port())
                failing = False
            except Exception as exc:  # noqa: BLE001 (a beat must never end the service's loop)
                if not failing:
                    log.warning("heartbeat not written (%s)", type(exc).__name__)
                failing = True
            stop_if_cancelled()  # a stop's cancel that came as an outage, or was lost in one
            await asyncio.sleep(BEAT_SECONDS)

    async def stop(self) -> None:
        """Stop beating and remove the row (best effort: a silent row is forgotten anyway)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        with contextlib.suppress(*DB_ERRORS, asyncpg.PostgresError, TimeoutError):
            async with asyncio.timeout(2), self._pool.acquire() as connection:
                await connection.execute("delete from service_heartbeats where instance = $1", self.instance)


async def beat(
    connection: Connection, instance: str, service: str, ready: bool, metrics_port: int | None
) -> None:
    """Renew one process's row (and forget rows silent for long)."""
    await connection.execute(
        "insert into service_heartbeats (instance, service, started_at, seen_at, ready, metrics_port)"
        " values ($1, $2, now(), now(), $3, $4)"
        " on conflict (instance) do update set seen_at = now(), ready = $3, metrics_port = $4",
        instance,
        service,
        ready,
        metrics_port,
    )
    await connection.execute(
        "delete from service_heartbeats where seen_at < now() - $1::interval", FORGET_AFTER
    )


async def service_beats(connection: Connection) -> list[ServiceBeat]:
    """Every service process heard from in the last ten minutes, by service then start."""
    rows = await connection.fetch(
        "select instance, service, started_at, seen_at, ready, metrics_port,"
        " extract(epoch from now() - seen_at)::float8 as silent"
        " from service_heartbeats where seen_at >= now() - $1::interval"
        " order by service, started_at",
        FORGET_AFTER,
    )
    return [
        ServiceBeat(
            r["instance"],
            r["service"],
            r["started_at"],
            r["seen_at"],
            r["ready"],
            r["metrics_port"],
            r["silent"],
        )
        for r in rows
    ]
