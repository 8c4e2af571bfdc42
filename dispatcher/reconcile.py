"""Desired topology from the registry, declared on the broker: RabbitMQ then routes alone.

Every trigger's invocations carry the routing key `workspace.trigger`. An unordered
trigger's key is bound to its own bounded work queue (`PREFIX.work.<workspace>.<trigger>`),
so a trigger flooded past its bound is refused alone and its backlog delays no other
trigger (workers consume every trigger queue fairly, worker/triggerqueues.py). The shared
work queue stays: retries come back to it from their delay queues, released holds too, and
calls queued there before trigger queues existed are drained by the workers. An ordered trigger's key to its own
single-active-consumer queue, or (ordering key) to a consistent-hash exchange spreading
the calls over N such queues by the `x-hookline-key` header. A key bound nowhere makes the
ingress's mandatory publish come back unroutable (503), which is how an ordered trigger
refuses calls until its queue exists: a message can never reach the wrong queue.

Changing how a trigger is ordered (partition count, key, on or off) is drain-then-switch:
the current layout is marked draining and unbound, a new generation with new queue names
is bound at once (callers keep getting 202), and workers consume a trigger's generations
strictly oldest first. A draining layout is deleted only when it is empty and nobody holds
a message of it, so no call of a key runs before an earlier call of the same key.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import aiormq
from aio_pika.abc import AbstractConnection

from shared.broker.inspection import exchange_exists, queue_state, raw_channel
from shared.db.lanes import TriggerShape
from shared.wire import topology
from shared.wire.topology import LaneLayout, QueueSpec

log = logging.getLogger(__name__)

# The weight of each partition queue on the hash ring (equal shares).
PARTITION_WEIGHT = "1"
FULL_EVERY = 300.0  # seconds between whole passes of Reconciler.apply (see there)


@dataclass(frozen=True)
class Target:
    """What a routing key is bound to: a queue, or a partition exchange."""

    kind: Literal["queue", "exchange"]
    name: str


@dataclass(frozen=True)
class Route:
    """Where one trigger's key must be bound (`bind`), and the targets it must leave."""

    key: str
    bind: Target | None  # None: bound nowhere (deleted trigger)
    leave: tuple[Target, ...]


@dataclass(frozen=True)
class Lane:
    """An active layout to declare: its queues and, if partitioned, its exchange."""

    queues: tuple[QueueSpec, ...]
    exchange: str | None


@dataclass(frozen=True)
class Topology:
    """Fixed queues, active lanes and one route per trigger: a pure function of the registry."""

    work: QueueSpec
    dead: QueueSpec
    retries: tuple[QueueSpec, ...]
    lanes: tuple[Lane, ...]
    routes: tuple[Route, ...]
    holds: tuple[QueueSpec, ...] = ()  # hold queues of paused unordered triggers
    triggers: tuple[QueueSpec, ...] = ()  # the own queue of each live unordered trigger
    # Trigger queues of triggers deleted or ordered now: emptied into the work queue, then deleted.
    retiring: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayoutChanges:
    """Layouts to start draining and layouts to create, so routing matches the triggers."""

    drain: tuple[LaneLayout, ...]
    create: tuple[LaneLayout, ...]


def layout_changes(shapes: list[TriggerShape], layouts: list[LaneLayout]) -> LayoutChanges:
    """Compare what each trigger asks for with its active layout."""
    by_trigger = _by_trigger(layouts)
    drain: list[LaneLayout] = []
    create: list[LaneLayout] = []
    known = set()
    for shape in shapes:
        known.add((shape.workspace, shape.name))
        rows = by_trigger.get((shape.workspace, shape.name), [])
        active = next((x for x in rows if not x.draining), None)
        wanted = None if shape.deleted else shape.partitions
        if active is not None and wanted is not None and active.same_shape(wanted, shape.key):
            continue
        if active is not None:
            drain.append(active)
        if wanted is not None:
            generation = max((x.generation for x in rows), default=0) + 1
            create.append(LaneLayout(shape.workspace, shape.name, generation, wanted, shape.key))
    # Layouts of triggers gone from the registry altogether (a workspace deleted).
    drain += [x for key, rows in by_trigger.items() if key not in known for x in rows if not x.draining]
    return LayoutChanges(tuple(drain), tuple(create))


def desired_topology(
    shapes: list[TriggerShape],
    layouts: list[LaneLayout],
    prefix: str,
    max_length: int,
    delivery_limit: int,
    pauses: Mapping[tuple[str, str], bool] | None = None,
    trigger_max_length: int | None = None,
) -> Topology:
    """What the broker should look like for these triggers and layouts.

    `pauses` maps a paused trigger to whether it is being resumed. A paused unordered
    trigger's key is bound to its hold queue instead of the work queue; a resumed one's is
    bound back (the dispatcher then empties the hold queue). Ordered triggers keep their
    lanes: their workers stop consuming them instead, which keeps the order.

    `trigger_max_length` bounds each trigger queue whose trigger sets no `max_queued`
    (None: `max_length`).
    """
    pauses = pauses or {}
    work = QueueSpec(
        topology.work_queue_name(prefix),
        topology.work_queue_arguments(prefix, max_length, delivery_limit),
    )
    dead = QueueSpec(topology.dead_letter_queue_name(prefix), topology.dead_letter_queue_arguments())
    retries = tuple(
        QueueSpec(
            topology.retry_queue_name(prefix, tier), topology.retry_queue_arguments(prefix, tier, max_length)
        )
        for tier in topology.RETRY_TIERS
    )
    lane_args = topology.ordered_queue_arguments(prefix, max_length, delivery_limit)
    by_trigger = _by_trigger(layouts)
    work_target = Target("queue", work.name)
    lanes: list[Lane] = []
    routes: list[Route] = []
    holds: list[QueueSpec] = []
    triggers: list[QueueSpec] = []
    retiring: list[str] = []
    for shape in sorted(shapes, key=lambda s: (s.workspace, s.name)):
        key = topology.routing_key(shape.workspace, shape.name)
        own = Target("queue", topology.trigger_queue_name(prefix, shape.workspace, shape.name))
        if shape.unordered:
            bound = shape.max_queued or trigger_max_length or max_length
            triggers.append(
                QueueSpec(own.name, topology.trigger_queue_arguments(prefix, bound, delivery_limit))
            )
        else:
            retiring.append(own.name)
        rows = by_trigger.get((shape.workspace, shape.name), [])
        old = tuple(_target(x, prefix) for x in rows if x.draining)
        active = next((x for x in rows if not x.draining), None)
        pause = pauses.get((shape.workspace, shape.name))
        hold = Target("queue", topology.hold_queue_name(prefix, shape.workspace, shape.name))
        if pause is not None:
            old = (*old, hold)  # left unless it is where the key must go (below)
        if shape.deleted:
            extra = (_target(active, prefix),) if active is not None else ()
            routes.append(Route(key, None, (work_target, own, *old, *extra)))
        elif active is not None:
            lanes.append(
                Lane(tuple(QueueSpec(q, lane_args) for q in active.queues(prefix)), active.exchange(prefix))
            )
            routes.append(Route(key, _target(active, prefix), (work_target, own, *old)))
        elif pause is False:
            holds.append(QueueSpec(hold.name, topology.hold_queue_arguments(prefix, max_length)))
            routes.append(Route(key, hold, (work_target, own, *(x for x in old if x != hold))))
        else:
            # The work queue is left too: before trigger queues, every unordered key was bound there.
            routes.append(Route(key, own, (work_target, *old)))
    return Topology(
        work, dead, retries, tuple(lanes), tuple(routes), tuple(holds), tuple(triggers), tuple(retiring)
    )


def _by_trigger(layouts: list[LaneLayout]) -> dict[tuple[str, str], list[LaneLayout]]:
    grouped: dict[tuple[str, str], list[LaneLayout]] = defaultdict(list)
    for layout in sorted(layouts, key=lambda x: x.generation):
        grouped[(layout.workspace, layout.trigger)].append(layout)
    return grouped


def _target(layout: LaneLayout, prefix: str) -> Target:
    exchange = layout.exchange(prefix)
    return Target("exchange", exchange) if exchange else Target("queue", layout.queues(prefix)[0])


class Reconciler:
    """Applies a Topology to the broker (declares are idempotent, so it is safe to repeat)."""

    def __init__(self, connection: AbstractConnection, prefix: str, nodes: int = 1) -> None:
        self._connection = connection
        self._prefix = prefix
        self._placement = topology.placement_arguments(nodes)
        self._channel: aiormq.abc.AbstractChannel  # one per apply()
        # What the last apply() put in place, so that the next one (a registry change) only
        # declares and routes what changed: with a thousand triggers a whole pass takes
        # seconds, and a new trigger would wait that long to be routed. A whole pass runs
        # again after FULL_EVERY seconds, after a failed apply and after a reconnect (`forget`).
        self._queues_applied: frozenset[QueueSpec] = frozenset()
        self._routes_applied: frozenset[Route] = frozenset()
        self._full_at = -FULL_EVERY

    def forget(self) -> None:
        """The next apply() declares and routes everything again (the broker may have lost it)."""
        self._queues_applied, self._routes_applied, self._full_at = frozenset(), frozenset(), -FULL_EVERY

    async def apply(self, desired: Topology) -> None:
        """Declare exchanges and queues, then route every trigger's key.

        Unbinding comes before binding: while a trigger switches between queues, its
        calls are refused (503) for a moment rather than routed twice.
        """
        invocations = topology.invocations_exchange(self._prefix)
        now = time.monotonic()
        if now - self._full_at >= FULL_EVERY:
            self.forget()
            self._full_at = now
        queues = (desired.dead, desired.work, *desired.retries, *desired.holds, *desired.triggers)
        done_queues, done_routes = self._queues_applied, self._routes_applied
        self._queues_applied, self._routes_applied = frozenset(), frozenset()  # until this one holds
        # The current channel: a refused declare closes it and `_declare_queue` opens another.
        self._channel = await raw_channel(self._connection)
        try:
            await self._channel.exchange_declare(invocations, exchange_type="direct", durable=True)
            dead_exchange = topology.dead_letter_exchange(self._prefix)
            await self._channel.exchange_declare(dead_exchange, exchange_type="fanout", durable=True)
            for queue in queues:
                if queue not in done_queues:
                    await self._declare_queue(queue)
            await self._channel.queue_bind(desired.dead.name, dead_exchange)
            for lane in desired.lanes:
                await self._declare_lane(lane)
            for route in desired.routes:
                if route in done_routes:
                    continue
                for target in route.leave:
                    if target.name == desired.work.name or await self._exists(target):
                        await _unbind(self._channel, target, invocations, route.key)
                if route.bind is not None:
                    await _bind(self._channel, route.bind, invocations, route.key)
        except BaseException:
            self._full_at = -FULL_EVERY  # the next one starts over
            raise
        finally:
            if not self._channel.is_closed:
                await self._channel.close()
        self._queues_applied, self._routes_applied = frozenset(queues), frozenset(desired.routes)
        log.info(
            "topology reconciled: %d triggers", len(desired.routes), extra={"count": len(desired.routes)}
        )

    async def _declare_queue(self, queue: QueueSpec) -> None:
        """Declare a queue; one that exists with other arguments is kept, loudly.

        Queue arguments cannot change in place (a changed HOOKLINE_DELIVERY_LIMIT or
        WORK_QUEUE_MAX_LENGTH): RabbitMQ refuses the declare and closes the channel. The
        rest of the topology is still applied, on a new channel, so new triggers route.

        On several nodes a quorum queue is first declared with its placement (replicas,
        leader spread: `topology.placement_arguments`); RabbitMQ compares those arguments
        too, so a queue that exists without them (an upgraded single-node deployment) is
        declared again as it was made.
        """
        arguments = queue.argument_dict()
        placement = {k: v for k, v in self._placement if k not in arguments}
        if placement and arguments.get("x-queue-type") == "quorum":
            # Where the replicas go is chosen at creation only: a queue made before the
            # cluster grew (or by a single node) is declared again without it below.
            try:
                await self._channel.queue_declare(
                    queue.name, durable=True, arguments={**arguments, **placement}
                )
            except aiormq.exceptions.ChannelPreconditionFailed:
                self._channel = await raw_channel(self._connection)
            else:
                return
        try:
            await self._channel.queue_declare(queue.name, durable=True, arguments=arguments)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            log.error(
                "queue %s exists with other arguments and is kept as it is (%s); to apply the new"
                " ones, drain and delete it, or set the settings back",
                queue.name,
                exc,
                extra={"queue": queue.name},
            )
            self._channel = await raw_channel(self._connection)

    async def _declare_lane(self, lane: Lane) -> None:
        if lane.exchange is not None:
            # `hash-header`: the ingress puts the key in a header, so the routing key stays
            # `workspace.trigger` and the invocations exchange can route it here unchanged.
            await self._channel.exchange_declare(
                lane.exchange,
                exchange_type="x-consistent-hash",
                durable=True,
                arguments={"hash-header": topology.ORDERING_KEY_HEADER},
            )
        for queue in lane.queues:
            await self._declare_queue(queue)
            if lane.exchange is not None:
                await self._channel.queue_bind(queue.name, lane.exchange, routing_key=PARTITION_WEIGHT)

    async def _exists(self, target: Target) -> bool:
        # Unbinding from a missing queue or exchange closes the channel: look first.
        if target.kind == "queue":
            return await queue_state(self._connection, target.name) is not None
        return await exchange_exists(self._connection, target.name)

    async def delete_layout(self, layout: LaneLayout) -> bool:
        """Delete a draining layout's queues if every one is empty and unconsumed.

        Quorum queues refuse `queue.delete(if_empty)` (NOT_IMPLEMENTED, and the connection
        is closed), so emptiness is read from a passive declare: nothing ready and no
        active consumer. Workers cancel a draining lane only when it holds nothing, so no
        unacknowledged message can hide behind that count.
        """
        states = [await queue_state(self._connection, q) for q in layout.queues(self._prefix)]
        if any(s is not None and (s.ready or s.consumers) for s in states):
            return False
        channel = await raw_channel(self._connection)
        try:
            exchange = layout.exchange(self._prefix)
            if exchange is not None:
                await channel.exchange_delete(exchange)
            for queue, state in zip(layout.queues(self._prefix), states, strict=True):
                if state is not None:
                    await channel.queue_delete(queue)
        finally:
            if not channel.is_closed:
                await channel.close()
        log.info(
            "drained layout deleted",
            extra={"workspace": layout.workspace, "trigger": layout.trigger, "generation": layout.generation},
        )
        return True


async def _bind(channel: aiormq.abc.AbstractChannel, target: Target, exchange: str, key: str) -> None:
    if target.kind == "queue":
        await channel.queue_bind(target.name, exchange, routing_key=key)
    else:
        await channel.exchange_bind(target.name, exchange, routing_key=key)


async def _unbind(channel: aiormq.abc.AbstractChannel, target: Target, exchange: str, key: str) -> None:
    if target.kind == "queue":
        await channel.queue_unbind(target.name, exchange, routing_key=key)
    else:
        await channel.exchange_unbind(target.name, exchange, routing_key=key)
