"""RabbitMQ connections: one that heals itself for a service, a plain one for a command.

aio-pika's robust connection reconnects after a drop, but its first connect fails if the
broker is down; `BrokerLink` keeps trying in the background so a service can start (and
answer 503) before the broker is up. Library errors become `BrokerUnavailable` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from shared.broker.failures import connect_failure, report_connect_failures_once, tls_cause
from shared.errors import BrokerUnavailable

log = logging.getLogger(__name__)


OnConnect = Callable[[AbstractRobustConnection], Awaitable[None]]

# How long one shutdown step on the broker (a consumer's cancel, a flush, a channel's or the
# connection's close) may take: a broker that does not answer must not hold a stop forever.
SHUTDOWN_STEP_SECONDS = 5.0


async def quietly(step: Awaitable[object], what: str, seconds: float = SHUTDOWN_STEP_SECONDS) -> None:
    """Await a shutdown step on the broker for at most `seconds`; a broker gone is no error.

    What it did not get to do the broker does itself once the connection drops: the
    unacknowledged messages go back to the head of their queues.
    """
    try:
        async with asyncio.timeout(seconds):
            await step
    except TimeoutError:
        log.warning("%s took over %.0f s; going on without it", what, seconds)
    except CONNECTION_EXCEPTIONS:
        pass


class BrokerLink:
    """One robust connection, opened in the background until the broker answers."""

    def __init__(self, url: str, name: str, heartbeat: int = 15) -> None:
        self._url = url
        self._name = name
        self._heartbeat = heartbeat
        self.connection: AbstractRobustConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._on_connect: list[OnConnect] = []
        report_connect_failures_once()

    def on_connect(self, callback: OnConnect) -> None:
        """Run `callback(connection)` once, when the first connection is made."""
        self._on_connect.append(callback)

    async def start(self, wait: float | None = None) -> None:
        """Start connecting; with `wait`, give up waiting (not connecting) after that long."""
        self._task = asyncio.create_task(self._connect_loop(), name=f"{self._name}-connect")
        if wait is not None:
            try:
                await asyncio.wait_for(self._ready.wait(), wait)
            except TimeoutError:
                log.warning("broker not reachable yet; still trying", extra={"service": self._name})

    async def wait_ready(self) -> None:
        """Return once connected (and the on_connect callbacks ran)."""
        await self._ready.wait()

    @property
    def ready(self) -> bool:
        """Whether the connection is open right now."""
        return self._ready.is_set() and self.connection is not None and not self.connection.is_closed

    async def _connect_loop(self) -> None:
        delay = 0.2
        while True:
            try:
                connection = await aio_pika.connect_robust(
                    self._url,
                    client_properties={"connection_name": self._name},
                    heartbeat=self._heartbeat,
                    timeout=5,
                )
            except CONNECTION_EXCEPTIONS as exc:
                # A TLS refusal will not heal by waiting (a wrong CA, a certificate for another name).
                level = logging.WARNING if tls_cause(exc) else logging.INFO
                log.log(level, "broker unreachable (%s), retrying in %.1fs", connect_failure(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.connection = connection
            try:
                for callback in self._on_connect:
                    await callback(connection)
            except CONNECTION_EXCEPTIONS as exc:
                # Lost while setting up (channels, consumers): start over on a new connection,
                # or the service would stay up without ever being ready.
                log.warning("broker lost while setting up (%s), retrying in %.1fs", type(exc).__name__, delay)
                self.connection = None
                with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                    await connection.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._ready.set()
            return

    async def close(self) -> None:
        """Stop connecting and close the connection."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.connection is not None:
            await quietly(self.connection.close(), "closing the broker connection")


@contextlib.asynccontextmanager
async def connect_once(url: str, name: str) -> AsyncIterator[AbstractConnection]:
    """A plain connection for a command-line tool; BrokerUnavailable if there is none."""
    report_connect_failures_once()
    try:
        connection = await aio_pika.connect(url, timeout=10, client_properties={"connection_name": name})
    except CONNECTION_EXCEPTIONS as exc:
        raise BrokerUnavailable(f"cannot reach RabbitMQ ({connect_failure(exc)})") from None
    try:
        yield connection
    finally:
        await connection.close()
