"""hookline's services in the test's own process, on the session's real RabbitMQ and PostgreSQL.

A dispatcher as a task of the test (it declares the topology and files dead letters), a
worker that runs until idle (`Worker.run_until_idle`, arq's burst mode) or as a task, and
invocations published as the ingress publishes them. Each module takes its own database and
queue-name prefix: no other dispatcher reads its triggers and lane layouts, its queues are
its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import msgspec
from litestar.testing import AsyncTestClient

from dispatcher.service import Dispatcher
from shared.broker.inspection import QueueState, queue_state
from shared.db.migrate import migrate
from shared.db.pool import Connection, connect
from shared.ids import uuid7
from shared.ops.replay import publish_invocation
from shared.settings import Settings
from shared.wire import topology
from shared.wire.messages import Invocation, RequestData
from tests.helpers import eventually
from worker.service import Worker


@contextlib.asynccontextmanager
async def private_database(server_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database (dropped afterwards); its URL."""
    name = f"hookline_inproc_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'create database "{name}"')
        url = f"{server_url.rpartition('/')[0]}/{name}"
        try:
            async with connect(url) as connection:
                await migrate(connection)
            yield url
        finally:
            await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()


def in_process_settings(amqp_url: str, database_url: str, **overrides: Any) -> Settings:
    """Settings of this module's services: a queue-name prefix of their own."""
    values: dict[str, Any] = {"amqp_prefix": f"hlinproc-{uuid.uuid4().hex[:8]}", "log_json": False}
    return Settings(amqp_url=amqp_url, database_url=database_url, **{**values, **overrides})


@contextlib.asynccontextmanager
async def dispatcher_running(settings: Settings) -> AsyncIterator[Dispatcher]:
    """A dispatcher task; yields once its topology exists (the work queue declared)."""
    dispatcher = Dispatcher(settings)
    running = asyncio.create_task(dispatcher.run(), name="dispatcher")
    try:
        async with broker(settings) as connection:

            async def declared() -> QueueState | None:
                assert not running.done(), "the dispatcher stopped"
                return await queue_state(connection, topology.work_queue_name(settings.amqp_prefix))

            await eventually(declared, timeout=30)
        yield dispatcher
    finally:
        dispatcher.stop()
        await running


@contextlib.asynccontextmanager
async def broker(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    """A plain connection of the test's own."""
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        yield connection
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def worker_beside(client: AsyncTestClient, settings: Settings) -> AsyncIterator[Worker]:  # type: ignore[type-arg]
    """A worker consuming on the event loop of the app under `client` until the block ends
    (then stopped as SIGTERM stops it).

    Litestar's test client runs the app on a loop of its own, in a thread (a blocking
    portal), and blocks the test's loop while a request is in flight: a worker on the
    test's loop could not answer a request-response call in time.
    """
    portal = client.blocking_portal
    worker = Worker(settings, 4, shutdown_grace=10)
    running = portal.start_task_soon(worker.run)
    try:
        yield worker
    finally:
        portal.call(worker.stop)
        await asyncio.wrap_future(running)


async def trigger_version(db: Connection, workspace: str, trigger: str) -> int:
    version = await db.fetchval(
        "select version from triggers where workspace = $1 and name = $2 and deleted_at is null",
        workspace,
        trigger,
    )
    assert isinstance(version, int)
    return version


def invocation(workspace: str, trigger: str, version: int, body: Any) -> Invocation:
    """An async call with a JSON body, as the ingress would have accepted it."""
    return Invocation(
        id=str(uuid7()),
        workspace=workspace,
        trigger=trigger,
        version=version,
        mode="async",
        received_at=time.time(),
        request=RequestData(
            method="POST",
            path=f"/hooks/{workspace}/{trigger}",
            content_type="application/json",
            body_kind="json",
            body=msgspec.to_builtins(body),
        ),
    )


async def publish(settings: Settings, call: Invocation, ordering_key: str | None = None) -> None:
    """Publish with a confirm to the invocations exchange, routed like a call of its trigger."""
    async with broker(settings) as connection:
        await publish_invocation(
            connection, settings.amqp_prefix, call, ordering_key, settings.publish_timeout
        )


async def ready_in(settings: Settings, queue: str) -> int:
    """Messages ready in `queue` (0 when it does not exist)."""
    async with broker(settings) as connection:
        state = await queue_state(connection, queue)
    return 0 if state is None else state.ready
