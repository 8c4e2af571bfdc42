"""The ingress's broker side: one confirm channel per process, replies consumed on it.

Direct reply-to only delivers to the channel that published the request, so the channel
that publishes work with confirms also consumes `amq.rabbitmq.reply-to`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from ingress.errors import MalformedBody
from ingress.fullqueues import FullQueues
from ingress.replies import REPLY_TO, ReplyWaiter
from shared.broker.link import BrokerLink, quietly
from shared.broker.publishers import ConfirmedPublisher, QueueFull, open_confirm_channel
from shared.errors import BrokerUnavailable
from shared.runtime import tracing
from shared.settings import Settings
from shared.wire import topology
from shared.wire.amqp import invocation_properties
from shared.wire.messages import Invocation, invocation_encoder

log = logging.getLogger(__name__)

# aiormq keeps `connection.blocked` in a private (name-mangled) event; tests pin the name.
UNBLOCKED_EVENT = "_Connection__connection_unblocked"

# On several nodes, a nack may come from a quorum queue that was electing a leader when the
# channel was opened: such a channel is nacked for as long as it lives (DESIGN, measured
# 28 s and more), so after a nack the publishing channel is replaced, once per
# NACK_REOPEN_SECONDS at most. The old channel keeps consuming its replies (direct reply-to
# answers on the channel that published) for REPLIES_GRACE_SECONDS before it is closed.
NACK_REOPEN_SECONDS = 0.5
REPLIES_GRACE_SECONDS = 60.0


class InvocationPublisher:
    """Publishes invocations with confirms; request-response ones ask for a reply."""

    def __init__(self, settings: Settings, waiter: ReplyWaiter) -> None:
        self._settings = settings
        self._waiter = waiter
        self._link = BrokerLink(settings.amqp_url, "hookline-ingress", settings.heartbeat)
        self._link.on_connect(self._on_connect)
        self._exchange: AbstractExchange | None = None
        self._channel: AbstractRobustChannel | None = None
        self._publisher: ConfirmedPublisher | None = None
        self._reopening: asyncio.Future[None] | None = None
        self._full = FullQueues()
        self._cluster = len(settings.amqp_urls) > 1
        self._after_nack: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # Serve even while the broker is down: calls get 503 until it answers.
        await self._link.start(wait=5)

    async def close(self) -> None:
        for task in (self._after_nack, *self._retired):
            if task is not None:
                task.cancel()
        await self._link.close()

    @property
    def ready(self) -> bool:
        return self._exchange is not None and self._link.ready

    @property
    def connection(self) -> AbstractRobustConnection:
        """The process's broker connection (the management API reads queues through it)."""
        if self._link.connection is None or not self._link.ready:
            raise BrokerUnavailable("the broker is unreachable")
        return self._link.connection

    async def _on_connect(self, connection: AbstractRobustConnection) -> None:
        await self._open(connection)
        connection.close_callbacks.add(self._on_close)
        connection.reconnect_callbacks.add(self._on_reconnect)

    async def _open(self, connection: AbstractRobustConnection) -> None:
        channel = await open_confirm_channel(connection)
        replies = await channel.get_queue(REPLY_TO, ensure=False)
        await replies.consume(self._waiter.on_message, no_ack=True)
        name = topology.invocations_exchange(self._settings.amqp_prefix)
        self._publisher = ConfirmedPublisher(channel, name, self._settings.publish_timeout)
        self._exchange = await channel.get_exchange(name, ensure=False)
        self._channel = channel

    def _blocked(self) -> bool:
        """Whether the broker sent `connection.blocked` (a memory or disk alarm).

        A blocked connection accepts publishes into its buffer and never confirms them;
        refusing at once beats waiting for the publish deadline. aiormq keeps the state in
        a private event and has no public accessor, hence the guarded lookup.
        """
        robust = self._link.connection
        transport = getattr(robust, "transport", None)
        underlying = getattr(transport, "connection", None)
        unblocked = getattr(underlying, UNBLOCKED_EVENT, None)
        return isinstance(unblocked, asyncio.Event) and not unblocked.is_set()

    def _on_close(self, *_: object) -> None:
        # Calls fail fast (503) until the channel is back; pending replies are lost.
        self._exchange = None
        self._waiter.fail_all()

    def _on_reconnect(self, connection: Any, *_: Any) -> None:
        # aio-pika restores the channel but not its direct reply-to consumer, and a publish
        # with reply_to on a channel that does not consume it closes the channel
        # (PRECONDITION_FAILED): so start over on a fresh channel.
        self._reopening = asyncio.ensure_future(self._reopen(connection))

    async def _reopen(self, connection: AbstractRobustConnection) -> None:
        old = self._channel
        try:
            await self._open(connection)
        except CONNECTION_EXCEPTIONS as exc:
            log.warning("could not reopen the publishing channel (%s)", type(exc).__name__)
            return
        if old is not None and not old.is_closed:
            await old.close()

    async def publish(
        self,
        invocation: Invocation,
        routing_key: str,
        want_reply: bool,
        ordering_key: str | None = None,
        claim_run: bool = False,
    ) -> None:
        """Return once the broker confirmed; raise BrokerUnavailable (or a subclass) if not.

        `ordering_key` goes in the header the trigger's consistent-hash exchange hashes;
        `claim_run` marks a call that may be published twice under its id (a keyed call).
        """
        publisher = self._publisher
        if self._exchange is None or publisher is None or not self._link.ready:
            raise BrokerUnavailable("the broker is unreachable")
        if self._blocked():
            raise BrokerUnavailable("the broker is refusing new messages for now (resource alarm)")
        try:
            message = invocation_encoder.encode(invocation)
        except OverflowError:
            # A JSON integer msgpack cannot carry: found here at no cost to other calls, where
            # a walk over every parsed body would cost a third of a second per 6 MB.
            raise MalformedBody(
                "the call holds an integer outside -9223372036854775808 to 18446744073709551615"
            ) from None
        self._full.check(routing_key)
        traced = (
            tracing.publishing(self._exchange.name, routing_key, invocation.id)
            if tracing.on
            else tracing.UNTRACED
        )
        with traced as traceparent:
            # The AMQP properties directly: an aio_pika.Message costs ~11 us more per call.
            properties = invocation_properties(
                invocation.id,
                reply_to=REPLY_TO if want_reply else None,
                ordering_key=ordering_key,
                traceparent=traceparent,
                claim_run=claim_run,
            )
            try:
                await publisher.publish(message, properties, routing_key)
            except QueueFull:
                self._full.found_full(routing_key)
                if self._cluster:
                    self._replace_after_nack()
                raise

    def _replace_after_nack(self) -> None:
        """Open a new publishing channel shortly (one at a time); see NACK_REOPEN_SECONDS."""
        if self._after_nack is not None and not self._after_nack.done():
            return
        self._after_nack = asyncio.create_task(self._replace_channel(), name="reopen-after-nack")

    async def _replace_channel(self) -> None:
        await asyncio.sleep(NACK_REOPEN_SECONDS)
        connection = self._link.connection
        old = self._channel
        if connection is None or not self._link.ready:
            return  # a reconnect opens a fresh channel anyway
        try:
            await self._open(connection)
        except CONNECTION_EXCEPTIONS as exc:
            log.warning("could not reopen the publishing channel (%s)", type(exc).__name__)
            return
        log.info("publishing channel replaced after a nack")
        if old is not None:
            retire = asyncio.create_task(self._retire(old), name="retire-channel")
            self._retired.add(retire)
            retire.add_done_callback(self._retired.discard)
        await asyncio.sleep(NACK_REOPEN_SECONDS)  # at most one replacement per this long

    async def _retire(self, channel: AbstractRobustChannel) -> None:
        """Close a replaced channel once the replies to what it published had time to come."""
        await asyncio.sleep(REPLIES_GRACE_SECONDS)
        if not channel.is_closed:
            await quietly(channel.close(), "closing a replaced channel")
