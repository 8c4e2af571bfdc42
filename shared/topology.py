"""Every exchange and queue name, and the arguments queues are declared with, as values.

Names come from pure functions pinned by tests: renaming a queue is a migration.
Workspace and trigger names cannot contain dots, so `workspace.trigger` is unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    """The one queue all unordered triggers share (competing workers)."""
    return f"{prefix}.work"


def dead_letter_queue_name(prefix: str) -> str:
    """Where dead letters wait for an operator."""
    return f"{prefix}.dead-letters"


def ordered_queue_name(prefix: str, workspace: str, trigger: str) -> str:
    """The single-active-consumer queue of one ordered trigger."""
    return f"{prefix}.ordered.{workspace}.{trigger}"


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


def ordered_queue_arguments(prefix: str, max_length: int, delivery_limit: int) -> tuple[tuple[str, Any], ...]:
    """A work queue with a single active consumer: strict arrival order, one at a time."""
    return (
        *work_queue_arguments(prefix, max_length, delivery_limit),
        ("x-single-active-consumer", True),
    )


def dead_letter_queue_arguments() -> tuple[tuple[str, Any], ...]:
    """Dead letters are kept until replayed: quorum, unbounded."""
    return (("x-queue-type", "quorum"),)
