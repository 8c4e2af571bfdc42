"""Resuming a paused unordered trigger: what its hold queue kept goes to the work queue.

The hold queue dead-letters to the work queue (at least once, see
`topology.hold_queue_arguments`), so moving a message is rejecting it: the broker moves
it, and no message is ever only in the dispatcher's hands. The hold queue is deleted once
its key has been unbound for a while and it has stayed empty, as drained lanes are.
"""

from __future__ import annotations

import logging

import aiormq
from aio_pika.abc import AbstractConnection

from shared.broker.inspection import queue_state, raw_channel

log = logging.getLogger(__name__)


async def release_held(connection: AbstractConnection, queue: str) -> int:
    """Reject every message the hold queue has now (each goes to the work queue); how many."""
    state = await queue_state(connection, queue)
    if state is None or state.ready == 0:
        return 0
    channel = await raw_channel(connection)
    moved = 0
    try:
        # Bounded by what was there at the start: a late arrival waits for the next round.
        for _ in range(state.ready):
            got = await channel.basic_get(queue, no_ack=False)
            tag = got.delivery.delivery_tag if isinstance(got.delivery, aiormq.spec.Basic.GetOk) else None
            if tag is None:
                break
            await channel.basic_reject(tag, requeue=False)
            moved += 1
    finally:
        if not channel.is_closed:
            await channel.close()
    log.info("held calls released to the work queue", extra={"queue": queue, "count": moved})
    return moved


async def delete_if_empty(connection: AbstractConnection, queue: str) -> bool:
    """Delete the hold queue if it has nothing ready and no consumer (True: gone)."""
    state = await queue_state(connection, queue)
    if state is None:
        return True
    if state.ready or state.consumers:
        return False
    channel = await raw_channel(connection)
    try:
        await channel.queue_delete(queue)
    finally:
        if not channel.is_closed:
            await channel.close()
    return True
