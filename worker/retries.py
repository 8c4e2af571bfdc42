"""Attempts and backoff: how many times a delivery has run, when to run it next.

Two counters, kept apart on purpose. `x-hookline-attempt` counts runs that *failed* and
were retried (the trigger's `max_attempts` is about those); the quorum queue's
`x-delivery-count` counts deliveries that were never settled (a crashed or stopped worker)
and is bounded by the queue's `x-delivery-limit` instead. The execution record counts both:
its `attempts` is the run number, `x-hookline-runs` (runs recorded before this copy was
published) + 1 + redeliveries. Each delivery's headers are read once, into its `state`
(worker/deliveries.py `DeliveryState`).
"""

from __future__ import annotations

import aiormq

from shared.spec.model import Retry
from shared.wire import topology
from shared.wire.amqp import republished
from worker.deliveries import Delivery


def backoff_delay(retry: Retry, attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt`: backoff doubling, capped."""
    return float(min(retry.backoff * 2 ** (attempt - 1), retry.max_backoff))


def retry_properties(
    message: Delivery, next_attempt: int, runs: int, *, parked: bool = False
) -> aiormq.spec.Basic.Properties:
    """The properties of the copy put in a delay queue (or, `parked`, a hold queue): the same
    body, id and type, the next attempt's number."""
    return republished(
        message.message_id,
        message.headers,
        content_type=message.content_type,
        message_type=message.type,
        **{
            topology.ATTEMPT_HEADER: next_attempt,
            topology.RUNS_HEADER: runs,
            topology.PARKED_HEADER: True if parked else None,
        },
    )
