"""The harness's own broker work: the ceiling's queues, queue depths, purges, pre-filling."""

from __future__ import annotations

import asyncio

import aio_pika
from aio_pika.abc import AbstractConnection

from shared.broker.inspection import queue_state, raw_channel
from shared.wire import topology

CEILING_PREFIX = "ceiling"
ASYNC_QUEUE = "ceiling.async"  # scenarios 1 and 2
RPC_QUEUE = "ceiling.rpc"  # scenario 3
LANE_QUEUE = "ceiling.lane"  # scenario 4: single active consumer
DRAIN_QUEUE = "ceiling.drain"  # scenario 5


async def declare_ceiling_queues(
    connection: AbstractConnection, max_length: int, delivery_limit: int
) -> None:
    """The ceiling's queues, declared exactly like hookline's (quorum, bounded, delivery limit)."""
    shared = topology.work_queue_arguments(CEILING_PREFIX, max_length, delivery_limit)
    ordered = topology.ordered_queue_arguments(CEILING_PREFIX, max_length, delivery_limit)
    channel = await connection.channel()
    for name in (ASYNC_QUEUE, RPC_QUEUE, DRAIN_QUEUE):
        await channel.declare_queue(name, durable=True, arguments=dict(shared))
    await channel.declare_queue(LANE_QUEUE, durable=True, arguments=dict(ordered))
    await channel.close()


async def depth(connection: AbstractConnection, queue: str) -> int:
    """Messages ready in `queue` (not counting those delivered and not yet acknowledged)."""
    state = await queue_state(connection, queue)
    return state.ready if state is not None else 0


def unacknowledged(list_channels: str) -> int:
    """Messages delivered and not yet acknowledged, over every channel of the broker.

    From `rabbitmqctl --quiet list_channels --no-table-headers name messages_unacknowledged`:
    one line per channel, the count last ("127.0.0.1:5 -> 127.0.0.1:6 (1)\t4").
    """
    return sum(int(line.rsplit(None, 1)[-1]) for line in list_channels.splitlines() if line.strip())


async def purge(connection: AbstractConnection, queue: str) -> None:
    channel = await raw_channel(connection)
    await channel.queue_purge(queue)
    await channel.close()


async def prefill(
    connection: AbstractConnection, exchange: str, routing_key: str, bodies: list[bytes], window: int = 500
) -> None:
    """Publish every body persistent with confirms, `window` at a time."""
    channel = await connection.channel(publisher_confirms=True)
    target = await channel.get_exchange(exchange, ensure=False) if exchange else channel.default_exchange
    for start in range(0, len(bodies), window):
        await asyncio.gather(
            *(
                target.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key
                )
                for body in bodies[start : start + window]
            )
        )
    await channel.close()
