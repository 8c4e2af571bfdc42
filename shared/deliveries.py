"""Consuming without aio-pika's per-message work: deliveries straight from aiormq.

aio-pika wraps every delivery in an `IncomingMessage` (each property copied through a
checked `__setattr__`) and runs the callback in a second task; a worker paid that on every
execution (py-spy under `make bench`). `RawConsumer` hands aiormq's delivery to the callback
in aiormq's own task, as a `Delivery` that reads the few properties hookline uses and
settles with one frame put on the connection's writer (no wait for the socket flush: the
frame goes out in order before anything queued after it, a channel close included).

It consumes on an aio-pika robust channel and consumes again whenever aio-pika reopens that
channel (a reconnect, a channel error), or after the broker cancelled the consumer, as
aio-pika's robust queue does for its own consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
from aio_pika.abc import AbstractRobustChannel
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.abc import DeliveredMessage

log = logging.getLogger(__name__)

RECONSUME_SECONDS = 1.0


class Delivery:
    """One delivered message: its body, the properties hookline reads, and its settlement."""

    __slots__ = ("_channel", "_properties", "_settled", "body", "delivery_tag")

    def __init__(self, message: DeliveredMessage) -> None:
        self.body: bytes = message.body
        self._properties = message.header.properties
        self._channel = message.channel
        self.delivery_tag: int | None = message.delivery_tag
        self._settled = False

    @property
    def headers(self) -> dict[str, Any] | None:
        return self._properties.headers

    @property
    def reply_to(self) -> str | None:
        return self._properties.reply_to

    @property
    def correlation_id(self) -> str | None:
        return self._properties.correlation_id

    @property
    def message_id(self) -> str | None:
        return self._properties.message_id

    @property
    def content_type(self) -> str | None:
        return self._properties.content_type

    @property
    def type(self) -> str | None:
        return self._properties.message_type

    def _take(self) -> int:
        # Settling twice would make the broker close the channel (unknown delivery tag).
        if self._settled or self.delivery_tag is None:
            raise aiormq.exceptions.AMQPError("the delivery is already settled (or was never to be)")
        self._settled = True
        return self.delivery_tag

    async def ack(self) -> None:
        """Acknowledge: the broker forgets the message."""
        await self._channel.basic_ack(self._take(), wait=False)

    async def reject(self, requeue: bool = False) -> None:
        """Reject: dead-lettered (or dropped) unless `requeue`."""
        await self._channel.basic_reject(self._take(), requeue=requeue, wait=False)

    async def nack(self, requeue: bool = True) -> None:
        """Negative acknowledgement: back to the queue when `requeue`."""
        await self._channel.basic_nack(self._take(), requeue=requeue, wait=False)


Callback = Callable[[Delivery], Awaitable[None]]


class RawConsumer:
    """One consumer of `queue` on a robust channel, surviving the channel's reopening."""

    def __init__(self, channel: AbstractRobustChannel, queue: str, callback: Callback) -> None:
        self._channel = channel
        self.queue = queue
        self._callback = callback
        self._underlay: aiormq.abc.AbstractChannel | None = None
        self._tag: str | None = None
        self._cancelled = False
        self._retrying: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Consume now (errors raise), and again after every reopening of the channel."""
        await self._consume()
        self._channel.reopen_callbacks.add(self._on_reopen)

    async def _deliver(self, message: DeliveredMessage) -> None:
        await self._callback(Delivery(message))

    async def _consume(self) -> None:
        underlay = await self._channel.get_underlay_channel()
        result = await underlay.basic_consume(self.queue, self._deliver)
        self._underlay, self._tag = underlay, result.consumer_tag
        underlay.on_consumer_cancel_callbacks.add(self._on_broker_cancel)

    async def _on_reopen(self, *_: Any) -> None:
        # aio-pika restored the channel (its prefetch too) on a new aiormq channel, which
        # knows nothing of this consumer.
        if not self._cancelled:
            self._consume_soon(0)

    def _on_broker_cancel(self, frame: aiormq.spec.Basic.Cancel) -> None:
        # The queue was deleted, or its node went away: consume again once it is back.
        if frame.consumer_tag == self._tag and not self._cancelled:
            self._tag = None
            self._consume_soon(RECONSUME_SECONDS)

    def _consume_soon(self, delay: float) -> None:
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._consume_again(delay), name=f"consume-{self.queue}")

    async def _consume_again(self, delay: float) -> None:
        while not self._cancelled:
            await asyncio.sleep(delay)
            try:
                await self._consume()
                return
            except CONNECTION_EXCEPTIONS as exc:
                log.info(
                    "cannot consume %s yet (%s)", self.queue, type(exc).__name__, extra={"queue": self.queue}
                )
                delay = RECONSUME_SECONDS

    async def cancel(self) -> None:
        """Stop consuming; deliveries in flight stay with their callbacks to settle."""
        self._cancelled = True
        self._channel.reopen_callbacks.discard(self._on_reopen)
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        underlay, tag = self._underlay, self._tag
        if underlay is not None and tag is not None and not underlay.is_closed:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await underlay.basic_cancel(tag)
