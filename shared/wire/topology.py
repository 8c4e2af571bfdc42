"""Every exchange and queue name, and the arguments queues are declared with, as values.

Names come from pure functions pinned by tests: renaming a queue is a migration.
Workspace and trigger names cannot contain dots, so `workspace.trigger` is unambiguous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Header the ingress sets on a keyed ordered trigger's invocations; the trigger's
# consistent-hash exchange hashes it to pick the partition queue.
ORDERING_KEY_HEADER = "x-hookline-key"
# Header counting failed runs of an invocation (1 on the first run), carried by retries.
ATTEMPT_HEADER = "x-hookline-attempt"
# Header with the runs already recorded when a message was published again (a retry, a
# dead letter replayed): the execution record counts every run.
RUNS_HEADER = "x-hookline-runs"
# Header of a dead letter put back by an operator: the worker counts on from the record.
REPLAYED_HEADER = "x-hookline-replayed"
# Header of a paused trigger's call that a worker sent back through the invocations
# exchange (to the hold queue the pause bound its key to). Met again on the work queue, it
# came through a resume (or a pause not carried out yet) and runs.
PARKED_HEADER = "x-hookline-parked"
# Header of an invocation that may be published more than once under its id (a call with an
# idempotency key: its publish may go unconfirmed and its retry publishes it again): the
# worker claims the run in the run log before running a first copy of it, so it runs once.
CLAIM_RUN_HEADER = "x-hookline-claim-run"
# The W3C trace context of the publish, when tracing is on (shared/runtime/tracing.py):
# the worker's run continues it. Carried by retries and dead letters put back, so every run
# of an execution is in the trace of its call.
TRACEPARENT_HEADER = "traceparent"

# Retry delays are served by a fixed set of delay queues, one per tier: quorum queues on
# RabbitMQ 3.10 support a queue-level TTL but no per-message TTL, so a delay is rounded
# to the nearest tier (on a log scale). Seconds.
RETRY_TIERS: tuple[float, ...] = (0.25, 1, 2, 5, 15, 60, 300, 900, 3600)


@dataclass(frozen=True)
class QueueSpec:
    """A queue as it should exist: name, arguments, and the routing keys bound to it."""

    name: str
    arguments: tuple[tuple[str, Any], ...]
    bindings: frozenset[str] = field(default_factory=frozenset)

    def argument_dict(self) -> dict[str, Any]:
        """The arguments in the form the AMQP client takes."""
        return dict(self.arguments)


def invocations_exchange(prefix: str) -> str:
    """Direct exchange the ingress publishes every invocation to."""
    return f"{prefix}.invocations"


def dead_letter_exchange(prefix: str) -> str:
    """Fanout exchange that receives what ran out of attempts or deliveries."""
    return f"{prefix}.dead"


def work_queue_name(prefix: str) -> str:
    """The shared queue: retries back from their delay queues, released holds, and calls
    queued before trigger queues existed. Every worker consumes it (competing workers)."""
    return f"{prefix}.work"


def trigger_queue_name(prefix: str, workspace: str, trigger: str) -> str:
    """An unordered trigger's own work queue, with its own bound: one trigger's flood fills
    only this queue, so other triggers' callers are neither refused nor kept waiting."""
    return f"{prefix}.work.{workspace}.{trigger}"


def dead_letter_queue_name(prefix: str) -> str:
    """Where dead letters wait for an operator."""
    return f"{prefix}.dead-letters"


def ordered_queue_name(
    prefix: str, workspace: str, trigger: str, generation: int = 1, part: int | None = None
) -> str:
    """A single-active-consumer queue of an ordered trigger.

    The first single lane keeps the plain name; later generations (a changed partition
    count or key) and partitions get their own names, so a new layout never shares a
    queue with one still draining.
    """
    base = f"{prefix}.ordered.{workspace}.{trigger}"
    if generation == 1 and part is None:
        return base
    name = f"{base}.g{generation}"
    return name if part is None else f"{name}.{part}"


def partition_exchange_name(prefix: str, workspace: str, trigger: str, generation: int) -> str:
    """The consistent-hash exchange spreading a keyed trigger's calls over its partitions."""
    return f"{prefix}.partitions.{workspace}.{trigger}.g{generation}"


def retry_queue_name(prefix: str, seconds: float) -> str:
    """The delay queue of one retry tier, e.g. `hookline.retry.250ms`, `hookline.retry.5m`."""
    return f"{prefix}.retry.{_label(seconds)}"


def hold_queue_name(prefix: str, workspace: str, trigger: str) -> str:
    """Where a paused unordered trigger's calls wait, unconsumed, until it is resumed."""
    return f"{prefix}.held.{workspace}.{trigger}"


def routing_key(workspace: str, trigger: str) -> str:
    """Routing key of a trigger's invocations on the invocations exchange."""
    return f"{workspace}.{trigger}"


def work_queue_arguments(prefix: str, max_length: int, delivery_limit: int) -> tuple[tuple[str, Any], ...]:
    """Quorum, bounded (publish refused when full), dead-lettered at least once.

    `x-delivery-limit` stops a message that crashes its worker from being redelivered
    forever; at-least-once dead-lettering needs `reject-publish` overflow (DESIGN pitfalls).
    """
    return (
        ("x-queue-type", "quorum"),
        ("x-max-length", max_length),
        ("x-overflow", "reject-publish"),
        ("x-dead-letter-exchange", dead_letter_exchange(prefix)),
        ("x-dead-letter-strategy", "at-least-once"),
        ("x-delivery-limit", delivery_limit),
    )


def trigger_queue_arguments(prefix: str, max_length: int, delivery_limit: int) -> tuple[tuple[str, Any], ...]:
    """A work queue of one trigger; leaders spread over the cluster's nodes (one Raft group
    per trigger: without `balanced` they all land on the node the dispatcher talks to)."""
    return (
        *work_queue_arguments(prefix, max_length, delivery_limit),
        ("x-queue-leader-locator", "balanced"),
    )


def placement_arguments(nodes: int) -> tuple[tuple[str, Any], ...]:
    """Where a quorum queue's replicas go on a cluster of `nodes`: on min(3, nodes) of them
    (RabbitMQ's default would be every node), the leaders spread over the nodes instead of
    all landing on the node the dispatcher declared them through. Nothing on one node.

    Creation-only: RabbitMQ refuses a declare whose arguments differ from the queue's, so
    the reconciler declares a queue made without them again without them.
    """
    if nodes <= 1:
        return ()
    return (("x-quorum-initial-group-size", min(3, nodes)), ("x-queue-leader-locator", "balanced"))


def ordered_queue_arguments(prefix: str, max_length: int, delivery_limit: int) -> tuple[tuple[str, Any], ...]:
    """A work queue with a single active consumer: strict arrival order, one at a time."""
    return (
        *work_queue_arguments(prefix, max_length, delivery_limit),
        ("x-single-active-consumer", True),
    )


def retry_queue_arguments(prefix: str, seconds: float, max_length: int) -> tuple[tuple[str, Any], ...]:
    """A delay tier: nobody consumes it; a message expires after the tier's TTL and is
    dead-lettered (at least once) through the default exchange straight to the work queue.

    Straight to the work queue, not back through the invocations exchange: only unordered
    runs are retried this way, and the work queue always exists, so an expired retry can
    never be unroutable (a deleted trigger's key routes nowhere).
    """
    return (
        ("x-queue-type", "quorum"),
        ("x-message-ttl", round(seconds * 1000)),
        ("x-max-length", max_length),
        ("x-overflow", "reject-publish"),
        ("x-dead-letter-exchange", ""),
        ("x-dead-letter-routing-key", work_queue_name(prefix)),
        ("x-dead-letter-strategy", "at-least-once"),
    )


def hold_queue_arguments(prefix: str, max_length: int) -> tuple[tuple[str, Any], ...]:
    """A hold queue: nobody consumes it; on resume the dispatcher rejects each message, and
    the broker dead-letters it (at least once) straight to the work queue, as a retry tier does.
    """
    return (
        ("x-queue-type", "quorum"),
        ("x-max-length", max_length),
        ("x-overflow", "reject-publish"),
        ("x-dead-letter-exchange", ""),
        ("x-dead-letter-routing-key", work_queue_name(prefix)),
        ("x-dead-letter-strategy", "at-least-once"),
    )


def dead_letter_queue_arguments() -> tuple[tuple[str, Any], ...]:
    """Dead letters are kept until replayed: quorum, unbounded."""
    return (("x-queue-type", "quorum"),)


def retry_tier(delay: float) -> float:
    """The tier nearest to `delay` on a log scale (1.4 s -> 1 s, 1.5 s -> 2 s, 4 s -> 5 s)."""
    if delay <= RETRY_TIERS[0]:
        return RETRY_TIERS[0]
    return min(RETRY_TIERS, key=lambda tier: abs(math.log(tier / delay)))


@dataclass(frozen=True)
class LaneLayout:
    """One generation of an ordered trigger's queues, as the dispatcher laid it out.

    `partitions == 0` is a single lane (`ordered: true`); N > 0 is a consistent-hash
    exchange over N lanes (`ordered: {key, partitions}`). A draining layout is bound to
    nothing and is consumed until empty, before any newer generation of the same trigger.
    """

    workspace: str
    trigger: str
    generation: int
    partitions: int
    key: str | None
    draining: bool = False

    def queues(self, prefix: str) -> tuple[str, ...]:
        """Its lane queues, in partition order."""
        if self.partitions == 0:
            return (ordered_queue_name(prefix, self.workspace, self.trigger, self.generation),)
        return tuple(
            ordered_queue_name(prefix, self.workspace, self.trigger, self.generation, part)
            for part in range(self.partitions)
        )

    def exchange(self, prefix: str) -> str | None:
        """Its consistent-hash exchange, if partitioned."""
        if self.partitions == 0:
            return None
        return partition_exchange_name(prefix, self.workspace, self.trigger, self.generation)

    def same_shape(self, partitions: int, key: str | None) -> bool:
        """Whether calls for this shape may keep going to this layout."""
        return (self.partitions, self.key) == (partitions, key)


def _label(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
