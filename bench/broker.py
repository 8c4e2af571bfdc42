"""The harness's own broker work: the ceiling's queues, queue depths, purges, pre-filling."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection

from shared.broker.inspection import queue_state, raw_channel
from shared.wire import topology

CEILING_PREFIX = "ceiling"
ASYNC_QUEUE = "ceiling.async"  # scenarios 1 and 2
RPC_QUEUE = "ceiling.rpc"  # scenario 3
LANE_QUEUE = "ceiling.lane"  # scenario 4: single active consumer
DRAIN_QUEUE = "ceiling.drain"  # scenario 5
CEILING_QUEUES = (ASYNC_QUEUE, RPC_QUEUE, LANE_QUEUE, DRAIN_QUEUE)


def ceiling_queue_arguments(
    name: str, max_length: int, delivery_limit: int, nodes: int = 1
) -> dict[str, Any]:
    """A ceiling queue's arguments: exactly like hookline's (quorum, bounded, delivery limit)
    and, on a cluster, placed like the dispatcher places hookline's (min(3, nodes) replicas,
    leaders balanced over the nodes), so both sides pay for the same replication."""
    if name == LANE_QUEUE:
        own = topology.ordered_queue_arguments(CEILING_PREFIX, max_length, delivery_limit)
    else:
        own = topology.work_queue_arguments(CEILING_PREFIX, max_length, delivery_limit)
    return {**dict(topology.placement_arguments(nodes)), **dict(own)}


async def declare_ceiling_queues(
    connection: AbstractConnection, max_length: int, delivery_limit: int, nodes: int = 1
) -> None:
    """The ceiling's queues (`ceiling_queue_arguments`)."""
    channel = await connection.channel()
    for name in CEILING_QUEUES:
        arguments = ceiling_queue_arguments(name, max_length, delivery_limit, nodes)
        await channel.declare_queue(name, durable=True, arguments=arguments)
    await channel.close()


def one_node(urls: str) -> str:
    """One node's URL of a comma-separated list, at random (a ceiling process connects to one
    node, as each of hookline's services starts at a random node of HOOKLINE_AMQP_URL)."""
    nodes = [url.strip() for url in urls.split(",") if url.strip()]
    return random.choice(nodes)  # spreading connections, not a secret


class PlacementError(Exception):
    """A queue a scenario uses is missing or not replicated like the others."""


def placement(list_queues: str, sides: dict[str, list[str]], nodes: int) -> dict[str, Any]:
    """Each side's queues: leader and replica count, and how many each node leads.

    From `rabbitmqctl list_queues name leader members --formatter json`. Every queue must
    exist with min(3, nodes) replicas (a node alone: its queues have no members listed).
    """
    listed = {q["name"]: q for q in json.loads(list_queues)}
    replicas = min(3, nodes)
    out: dict[str, Any] = {"nodes": nodes, "replicas": replicas}
    for side, names in sides.items():
        queues: dict[str, Any] = {}
        for name in names:
            queue = listed.get(name)
            if queue is None:
                raise PlacementError(f"{side} queue {name} does not exist")
            members = queue.get("members") or []
            count = len(members) if isinstance(members, list) else 1
            if nodes > 1 and count != replicas:
                raise PlacementError(f"{side} queue {name} has {count} replicas, not {replicas}")
            queues[name] = {"leader": queue.get("leader", ""), "replicas": max(count, 1)}
        leads = Counter(q["leader"] for q in queues.values())
        out[side] = {"queues": queues, "leaders_per_node": dict(sorted(leads.items()))}
    return out


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
