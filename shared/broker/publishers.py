"""Confirmed publishes with a deadline, and replies: the two ways hookline writes to RabbitMQ.

Every invocation goes out through `ConfirmedPublisher` (the ingress's calls, operators'
replays and resumes, retries, parked calls, replayed dead letters), with its properties
from `shared.wire.amqp`. Library errors become `BrokerUnavailable` (or a subclass saying
which 503) here, in `_unavailable`.
"""

from __future__ import annotations

import asyncio
from typing import cast

import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError, PublishError

from shared.errors import BrokerUnavailable


class QueueFull(BrokerUnavailable):
    """Raised when the broker refused a publish because the queue is at its bound."""

    problem_type = "queue-full"


class NotRouted(BrokerUnavailable):
    """Raised when no queue is bound for the message yet (the dispatcher has not caught up)."""

    problem_type = "trigger-not-ready"


async def open_confirm_channel(connection: AbstractRobustConnection) -> AbstractRobustChannel:
    """A channel whose publishes are confirmed and whose unroutable publishes raise."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    return channel


# What a confirmed publish can fail with; `_unavailable` says which 503 each one is.
_PUBLISH_ERRORS = (
    PublishError,
    DeliveryError,
    TimeoutError,
    *CONNECTION_EXCEPTIONS,
    aiormq.exceptions.AMQPError,
)


class Unconfirmed(BrokerUnavailable):
    """Raised when a publish was sent but never confirmed: its outcome is unknown.

    Measured on a cluster: every publish that timed out against a hung quorum-queue leader
    was in fact enqueued and run. The ingress tells the caller so, with the execution id the
    call would run under (`execution_id`, `status_url`, set by the ingress), and keeps a
    keyed call's claim: the retry with the same key publishes it again under that id, and
    the worker runs the id once (ingress/idempotency.py).
    """

    def __init__(self, message: str) -> None:
        super().__init__(
            message + "; the call may have been accepted all the same (see its status URL);"
            " a retry with the same idempotency key runs it at most once"
        )
        self.execution_id: str | None = None
        self.status_url: str | None = None


def _unavailable(exc: BaseException) -> BrokerUnavailable:
    """The BrokerUnavailable (or subclass) a failed confirmed publish becomes."""
    if isinstance(exc, PublishError):
        return NotRouted("no queue is bound for this trigger yet")
    if isinstance(exc, DeliveryError):
        return QueueFull("the trigger's queue is full")
    if isinstance(exc, TimeoutError):
        return Unconfirmed("the broker did not confirm in time")
    return Unconfirmed(f"the broker connection was lost before the confirm ({type(exc).__name__})")


class UnderlayChannel:
    """The aiormq channel under an aio-pika channel, followed when aio-pika reopens it (robust).

    Both publishers write straight to aiormq (skipping aio-pika's `Message`); after a
    reconnect the robust channel sits on a new aiormq channel, which `follow()` finds.
    Checking `channel` first keeps the usual case free of an extra await.
    """

    __slots__ = ("_deadline", "_robust", "channel")

    def __init__(self, robust: AbstractChannel, deadline: float) -> None:
        self._robust = robust
        self._deadline = deadline
        self.channel: aiormq.Channel | None = None

    async def follow(self) -> aiormq.Channel:
        """The current aiormq channel (waiting up to the deadline for a reopen)."""
        async with asyncio.timeout(self._deadline):
            underlay = await self._robust.get_underlay_channel()
        # `wait` (flush before returning) is on the concrete channel only.
        self.channel = cast(aiormq.Channel, underlay)
        return self.channel


class ConfirmedPublisher:
    """Publishes mandatory to one exchange, and returns once the broker confirmed.

    A nack means the bounded queue refused it (QueueFull); a return means nothing is bound
    for it (NotRouted); no answer within the deadline (a blocked or frozen broker) or a
    closed channel means BrokerUnavailable. The caller answers 503 for all of them.

    It hands the body and ready-made properties to aiormq, skipping aio-pika's `Message`
    (about 11 us to build and convert per message, measured with `make bench`), lets
    aiormq's own deadline bound the confirm, and does not wait for the frame to be flushed
    to the socket before waiting for the confirm (the confirm comes after the flush anyway).
    The channel must have publisher confirms and `on_return_raises` (`open_confirm_channel`).
    """

    def __init__(self, channel: AbstractChannel, exchange: str, deadline: float) -> None:
        self._underlay = UnderlayChannel(channel, deadline)
        self._exchange = exchange
        self._deadline = deadline

    async def publish(self, body: bytes, properties: aiormq.spec.Basic.Properties, routing_key: str) -> None:
        """Return once the broker confirmed; raise BrokerUnavailable (or a subclass) if not."""
        channel = self._underlay.channel
        if channel is None or channel.is_closed:
            try:
                channel = await self._underlay.follow()
            except _PUBLISH_ERRORS as exc:
                # Nothing was sent: the outcome is known.
                raise BrokerUnavailable(f"the broker is unreachable ({type(exc).__name__})") from None
        try:
            await channel.basic_publish(
                body,
                exchange=self._exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=True,
                timeout=self._deadline,
                wait=False,
            )
        except _PUBLISH_ERRORS as exc:
            raise _unavailable(exc) from None


class ReplyPublisher:
    """Publishes replies to direct reply-to: no confirm, no `mandatory`, no wait for the flush.

    Direct reply-to is at most once by nature (the record in PostgreSQL is the truth), so
    a reply is handed to aiormq's writer and forgotten, in order with what the process
    writes after it. `mandatory` stays off: RabbitMQ would also bounce every reply back
    (DESIGN). Like `ConfirmedPublisher`, it skips aio-pika's `Message` and follows the
    robust channel onto the aiormq channel it is reopened on.
    """

    def __init__(self, channel: AbstractRobustChannel, deadline: float) -> None:
        self._underlay = UnderlayChannel(channel, deadline)

    async def publish(self, body: bytes, properties: aiormq.spec.Basic.Properties, routing_key: str) -> None:
        """Hand the reply to the connection's writer; BrokerUnavailable when the channel is gone."""
        try:
            channel = self._underlay.channel
            if channel is None or channel.is_closed:
                channel = await self._underlay.follow()
            await channel.basic_publish(body, routing_key=routing_key, properties=properties, wait=False)
        except (*CONNECTION_EXCEPTIONS, TimeoutError, aiormq.exceptions.AMQPError) as exc:
            raise BrokerUnavailable(f"the broker is unreachable ({type(exc).__name__})") from None
