"""Looking at the broker without changing it: queue states and exchanges, by passive declares."""

from __future__ import annotations

from dataclasses import dataclass

import aiormq
from aio_pika.abc import AbstractConnection

from shared.errors import BrokerUnavailable


@dataclass(frozen=True)
class QueueState:
    """A queue as `queue.declare(passive)` reports it.

    `ready` leaves out unacknowledged messages, and a single-active-consumer quorum queue
    counts only its active consumer (measured on 3.10): `(0, 0)` means nothing is queued
    and nobody holds a message, as long as consumers cancel only when idle.
    """

    ready: int
    consumers: int


async def raw_channel(connection: AbstractConnection) -> aiormq.abc.AbstractChannel:
    """A plain (not robust) channel, for operations that may close it with an error.

    A robust channel that the broker closes (404 on a passive declare) reopens itself in
    the background; a probe wants the error and a channel it can simply drop.
    """
    transport = connection.transport
    if transport is None:
        raise BrokerUnavailable("the broker is unreachable")
    return await transport.connection.channel()


async def queue_state(connection: AbstractConnection, name: str) -> QueueState | None:
    """The queue's state, or None when it does not exist."""
    channel = await raw_channel(connection)
    try:
        declared = await channel.queue_declare(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return None
    finally:
        if not channel.is_closed:
            await channel.close()
    return QueueState(declared.message_count or 0, declared.consumer_count or 0)


async def exchange_exists(connection: AbstractConnection, name: str) -> bool:
    """Whether the exchange exists."""
    channel = await raw_channel(connection)
    try:
        await channel.exchange_declare(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return True
