"""A trigger queue whose trigger was deleted or made ordered: emptied, then deleted.

Its key is unbound first (reconcile), so nothing new arrives. Workers stop consuming it at
the same registry change; what it still holds was accepted as unordered calls, so it is
moved to the shared work queue (every worker consumes it) and runs there. A move is a
confirmed publish, then the ack: a crash in between leaves a second copy, never none (the
worker settles a copy already recorded without running it again). The queue is deleted
once it stays empty with no consumer, as a drained lane's queues are.
"""

from __future__ import annotations

import logging

import aiormq
from aio_pika.abc import AbstractConnection

from shared.broker.inspection import queue_state, raw_channel

log = logging.getLogger(__name__)


async def empty_into_work(connection: AbstractConnection, queue: str, work: str) -> int:
    """Move every message `queue` has now to the work queue (confirmed, then acked); how many."""
    state = await queue_state(connection, queue)
    if state is None or state.ready == 0:
        return 0
    channel = await raw_channel(connection)
    moved = 0
    try:
        await channel.confirm_delivery()
        for _ in range(state.ready):  # a late arrival waits for the next round
            got = await channel.basic_get(queue, no_ack=False)
            if not isinstance(got.delivery, aiormq.spec.Basic.GetOk):
                break
            assert got.delivery_tag is not None
            confirm = await channel.basic_publish(
                got.body, exchange="", routing_key=work, properties=got.header.properties
            )
            if not isinstance(confirm, aiormq.spec.Basic.Ack):
                await channel.basic_nack(got.delivery_tag, requeue=True)
                break  # the work queue is full or away: the next round tries again
            await channel.basic_ack(got.delivery_tag)
            moved += 1
    finally:
        if not channel.is_closed:
            await channel.close()
    log.info("retired trigger queue emptied into the work queue", extra={"queue": queue, "count": moved})
    return moved
