"""Remove what a test stack declared on a broker the tests did not start (HOOKLINE_TEST_AMQP_URL).

Private brokers go away with their folder; a shared one must be left as it was found. Queue
names come from shared.wire.topology for every trigger the session's database knows, so this
deletes exactly the stack's own queues (a delete of a missing queue is a no-op).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools

import aio_pika
import asyncpg

from shared.broker.link import connect_once
from shared.db.lanes import load_layouts
from shared.wire import topology


async def _names(database_url: str, prefix: str) -> tuple[list[str], list[str]]:
    connection = await asyncpg.connect(database_url)
    try:
        layouts = await load_layouts(connection)
        paused = await connection.fetch("select workspace, trigger from trigger_pauses")
        triggers = await connection.fetch("select workspace, name from triggers")
    finally:
        await connection.close()
    queues = [
        topology.work_queue_name(prefix),
        topology.dead_letter_queue_name(prefix),
        *(topology.retry_queue_name(prefix, tier) for tier in topology.RETRY_TIERS),
        *(topology.hold_queue_name(prefix, r["workspace"], r["trigger"]) for r in paused),
        *(topology.trigger_queue_name(prefix, r["workspace"], r["name"]) for r in triggers),
    ]
    exchanges = [topology.invocations_exchange(prefix), topology.dead_letter_exchange(prefix)]
    for layout in layouts:
        queues.extend(layout.queues(prefix))
        if (exchange := layout.exchange(prefix)) is not None:
            exchanges.append(exchange)
    return queues, exchanges


async def delete_stack_topology(amqp_url: str, database_url: str, prefix: str) -> None:
    """Delete every queue and exchange a stack with this prefix may have declared."""
    queues, exchanges = await _names(database_url, prefix)
    async with connect_once(amqp_url, "hookline-test-cleanup") as connection:  # a live node of a cluster
        channel = await connection.channel()
        for kind, name in itertools.chain((("q", q) for q in queues), (("x", x) for x in exchanges)):
            if channel.is_closed:
                channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                if kind == "q":
                    await channel.queue_delete(name)
                else:
                    await channel.exchange_delete(name)


def cleanup(amqp_url: str, database_url: str, prefix: str) -> None:
    """Synchronous form, for fixtures' teardown (and stacks used inside async tests)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(delete_stack_topology(amqp_url, database_url, prefix))
        return
    # Inside a running loop (an async test's `with services(...)`): on a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, delete_stack_topology(amqp_url, database_url, prefix)).result()
