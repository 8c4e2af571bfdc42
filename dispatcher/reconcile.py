"""Desired topology from the registry, declared on the broker: RabbitMQ then routes alone.

Every trigger's invocations carry the routing key `workspace.trigger`. An unordered
trigger's key is bound to the shared work queue; an ordered trigger's key to its own
single-active-consumer queue. A key bound nowhere makes the ingress's mandatory publish
come back unroutable (503), which is how an ordered trigger refuses calls until its queue
exists: a message can never reach the wrong queue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import ChannelNotFoundEntity

from shared import topology
from shared.db.registry import TriggerState
from shared.topology import QueueSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """Where one trigger's key must be bound (`queue`), and the queues it must leave."""

    key: str
    queue: QueueSpec | None  # None: bound nowhere (deleted trigger)
    leave: tuple[str, ...]


@dataclass(frozen=True)
class Topology:
    """Fixed queues plus one route per trigger: a pure function of the registry."""

    work: QueueSpec
    dead: QueueSpec
    routes: tuple[Route, ...]


def desired_topology(
    triggers: list[TriggerState], prefix: str, max_length: int, delivery_limit: int
) -> Topology:
    """What the broker should look like for these triggers."""
    work = QueueSpec(
        topology.work_queue_name(prefix),
        topology.work_queue_arguments(prefix, max_length, delivery_limit),
    )
    dead = QueueSpec(topology.dead_letter_queue_name(prefix), topology.dead_letter_queue_arguments())
    ordered_args = topology.ordered_queue_arguments(prefix, max_length, delivery_limit)
    routes = []
    for t in sorted(triggers, key=lambda t: (t.workspace, t.name)):
        key = topology.routing_key(t.workspace, t.name)
        lane = topology.ordered_queue_name(prefix, t.workspace, t.name)
        # A trigger that was ever ordered may still have a lane queue bound to its key.
        old_lane = (lane,) if t.was_ordered else ()
        if t.deleted:
            routes.append(Route(key, None, (work.name, *old_lane)))
        elif t.ordered:
            routes.append(Route(key, QueueSpec(lane, ordered_args), (work.name,)))
        else:
            routes.append(Route(key, work, old_lane))
    return Topology(work, dead, tuple(routes))


class Reconciler:
    """Applies a Topology to the broker (declares are idempotent, so it is safe to repeat)."""

    def __init__(self, connection: AbstractRobustConnection, prefix: str) -> None:
        self._connection = connection
        self._prefix = prefix

    async def apply(self, desired: Topology) -> None:
        """Declare exchanges and queues, then route every trigger's key.

        Unbinding comes before binding: while a trigger switches between shared and
        ordered, its calls are refused (503) for a moment rather than routed twice.
        """
        channel = await self._connection.channel()
        try:
            exchange = await channel.declare_exchange(
                topology.invocations_exchange(self._prefix),
                aio_pika.ExchangeType.DIRECT,
                durable=True,
            )
            dead_exchange = await channel.declare_exchange(
                topology.dead_letter_exchange(self._prefix),
                aio_pika.ExchangeType.FANOUT,
                durable=True,
            )
            dead = await channel.declare_queue(
                desired.dead.name, durable=True, arguments=desired.dead.argument_dict()
            )
            await dead.bind(dead_exchange)
            await channel.declare_queue(
                desired.work.name, durable=True, arguments=desired.work.argument_dict()
            )
            for route in desired.routes:
                for queue in route.leave:
                    await self._unbind(channel, exchange, queue, route.key)
                if route.queue is not None:
                    declared = await channel.declare_queue(
                        route.queue.name, durable=True, arguments=route.queue.argument_dict()
                    )
                    await declared.bind(exchange, route.key)
        finally:
            await channel.close()
        log.info(
            "topology reconciled: %d triggers",
            len(desired.routes),
            extra={"count": len(desired.routes)},
        )

    async def _unbind(
        self, channel: AbstractChannel, exchange: AbstractExchange, queue: str, key: str
    ) -> None:
        # Unbinding a missing binding is fine; a missing queue closes the channel, so look
        # for lane queues on a throwaway channel first (the work queue always exists here).
        if queue != topology.work_queue_name(self._prefix):
            probe = await self._connection.channel()
            try:
                await probe.get_queue(queue, ensure=True)
            except ChannelNotFoundEntity:
                return
            finally:
                if not probe.is_closed:
                    await probe.close()
        await (await channel.get_queue(queue, ensure=False)).unbind(exchange, key)
