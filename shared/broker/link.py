"""RabbitMQ connections: one that heals itself for a service, a plain one for a command.

aio-pika's robust connection reconnects after a drop, but its first connect fails if the
broker is down; `BrokerLink` keeps trying in the background so a service can start (and
answer 503) before the broker is up. Library errors become `BrokerUnavailable` here.

With several nodes (a comma-separated HOOKLINE_AMQP_URL) a service starts at a random node
and, when its node dies, the robust connection dials the next one instead of the same one
(`ClusterConnection`): channels and consumers are restored there and the services'
reconnect callbacks run as after any reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aio_pika.robust_connection import RobustConnection
from pamqp.common import FieldTable
from yarl import URL

from shared.broker.failures import connect_failure, report_connect_failures_once, tls_cause
from shared.errors import BrokerUnavailable
from shared.settings import split_amqp_urls

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


# With several nodes, how long the robust connection waits between two rounds over them
# (aio-pika's own default, 5 s, stays for one node).
CLUSTER_RECONNECT_SECONDS = 0.5


def _redacted(url: URL) -> str:
    return str(url.with_password("******")) if url.password else str(url)


class ClusterConnection(RobustConnection):
    """A robust connection that, on every (re)connect, dials the cluster's nodes in turn.

    aio-pika's robust connection re-dials the URL it was made with; this one is made with the
    first node to try and holds the others. Every connection attempt starts at the node after
    the last one dialled and tries each node once, so a dead node costs one refused connect,
    and a service whose node died is on the next live node at the first reconnect. Everything
    else (restoring channels and consumers, the reconnect callbacks) is aio-pika's own.
    """

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        nodes: Sequence[str] = kwargs.pop("nodes")
        super().__init__(url, loop=loop, **kwargs)
        self._nodes = [URL(node) for node in nodes]
        self._at = next((i for i, node in enumerate(self._nodes) if node == self.url), 0)
        self._dialled = False

    @property
    def nodes(self) -> int:
        """How many nodes it knows."""
        return len(self._nodes)

    async def _RobustConnection__connect_transport(self) -> None:
        """aio-pika's single connection attempt (its private, name-mangled method, pinned by a
        test), made to each node in turn until one answers."""
        connect_transport = RobustConnection._RobustConnection__connect_transport  # type: ignore[attr-defined]
        failure: BaseException | None = None
        for _ in self._nodes:
            if self._dialled:
                # The node dialled last is the one that was lost (or refused): the next first.
                self._at = (self._at + 1) % len(self._nodes)
            self._dialled = True
            self.url = self._nodes[self._at]
            try:
                await connect_transport(self)
            except CONNECTION_EXCEPTIONS as exc:
                log.debug("broker node %s unreachable (%s)", _redacted(self.url), type(exc).__name__)
                failure = exc
                continue
            log.info("connected to broker node %s", _redacted(self.url))
            return
        assert failure is not None
        raise failure


async def connect_nodes(urls: Sequence[str], name: str, heartbeat: int) -> AbstractRobustConnection:
    """A robust connection to one of `urls`: the URL itself for one node, a random first node
    and the others in turn (`ClusterConnection`) for several."""
    properties: FieldTable = {"connection_name": name}
    timeout = 5
    if len(urls) == 1:
        return await aio_pika.connect_robust(
            urls[0], client_properties=properties, heartbeat=heartbeat, timeout=timeout
        )
    first = random.randrange(len(urls))  # noqa: S311 (spreading connections, not a secret)
    ordered = [*urls[first:], *urls[:first]]
    connection: AbstractRobustConnection = await aio_pika.connect_robust(
        ordered[0],
        client_properties=properties,
        heartbeat=heartbeat,
        timeout=timeout,
        connection_class=ClusterConnection,
        nodes=ordered,
        reconnect_interval=CLUSTER_RECONNECT_SECONDS,
    )
    return connection


class BrokerLink:
    """One robust connection, opened in the background until the broker (a node of it) answers.

    `url` is HOOKLINE_AMQP_URL: one URL, or several (one per node) separated by commas.
    """

    def __init__(self, url: str, name: str, heartbeat: int = 15) -> None:
        self._urls = split_amqp_urls(url)
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
                connection = await connect_nodes(self._urls, self._name, self._heartbeat)
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
    """A plain connection for a command-line tool, to the first of the nodes that answers;
    BrokerUnavailable if none does."""
    report_connect_failures_once()
    urls = split_amqp_urls(url)
    failure = ""
    for node in urls:
        try:
            connection = await aio_pika.connect(node, timeout=10, client_properties={"connection_name": name})
        except CONNECTION_EXCEPTIONS as exc:
            failure = connect_failure(exc)
            continue
        break
    else:
        where = "RabbitMQ" if len(urls) == 1 else f"any of the {len(urls)} RabbitMQ nodes"
        raise BrokerUnavailable(f"cannot reach {where} ({failure})") from None
    try:
        yield connection
    finally:
        await connection.close()
