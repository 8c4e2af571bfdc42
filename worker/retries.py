"""Attempts and backoff: how many times a delivery has run, when to run it next.

Two counters, kept apart on purpose. `x-hookline-attempt` counts runs that *failed* and
were retried (the trigger's `max_attempts` is about those); the quorum queue's
`x-delivery-count` counts deliveries that were never settled (a crashed or stopped worker)
and is bounded by the queue's `x-delivery-limit` instead. The execution record counts both:
its `attempts` is the run number, `x-hookline-runs` (runs recorded before this copy was
published) + 1 + redeliveries.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import DeliveryMode

from shared.spec.model import Retry
from shared.wire import topology
from shared.wire.amqp import republished_headers
from worker.deliveries import Delivery


def attempt_of(message: Delivery) -> int:
    """The attempt this delivery is (1 for a first run; a retried copy carries its number)."""
    return _int_header(message, topology.ATTEMPT_HEADER, 1)


def runs_before(message: Delivery) -> int:
    """Runs recorded before this copy of the message was published."""
    return _int_header(message, topology.RUNS_HEADER, 0)


def replayed(message: Delivery) -> bool:
    """Whether an operator put this message back from the dead-letter queue."""
    return bool((message.headers or {}).get(topology.REPLAYED_HEADER))


def parked(message: Delivery) -> bool:
    """Whether a worker already sent this message towards a paused trigger's hold queue."""
    return bool((message.headers or {}).get(topology.PARKED_HEADER))


def redeliveries_of(message: Delivery) -> int:
    """How often the broker gave this message to a worker that did not settle it."""
    return _int_header(message, "x-delivery-count", 0)


def backoff_delay(retry: Retry, attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt`: backoff doubling, capped."""
    return float(min(retry.backoff * 2 ** (attempt - 1), retry.max_backoff))


def retry_copy(message: Delivery, next_attempt: int, runs: int, *, parked: bool = False) -> aio_pika.Message:
    """The message to put in a delay queue (or, `parked`, a hold queue): same body and id,
    the next attempt's number."""
    headers = {
        topology.ATTEMPT_HEADER: next_attempt,
        topology.RUNS_HEADER: runs,
        topology.PARKED_HEADER: True if parked else None,
    }
    return aio_pika.Message(
        message.body,
        headers=republished_headers(message.headers, **headers),
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        content_type=message.content_type,
        type=message.type,
    )


def _int_header(message: Delivery, name: str, default: int) -> int:
    value: Any = (message.headers or {}).get(name, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default
