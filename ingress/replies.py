"""Waiting for request-response answers on RabbitMQ's direct reply-to.

Futures keyed by correlation id (the execution id), removed when done; all failed at once
when the connection drops, since direct reply-to is at-most-once and a lost reply never
comes (callers get an answer, never a hang). Late replies are dropped at debug level.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aio_pika.abc import AbstractIncomingMessage

from ingress.errors import ReplyLost
from shared.wire.messages import Reply, reply_decoder

log = logging.getLogger(__name__)

REPLY_TO = "amq.rabbitmq.reply-to"


class ReplyWaiter:
    """Hands each reply to the caller waiting for its correlation id."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Reply]] = {}

    def expect(self, correlation_id: str) -> asyncio.Future[Reply]:
        """A future for the reply to `correlation_id`; forgotten once done or cancelled."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = future
        future.add_done_callback(lambda _: self._waiting.pop(correlation_id, None))
        return future

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """Consumer callback (no-ack: direct reply-to requires it)."""
        future = self._waiting.get(message.correlation_id or "")
        if future is None or future.done():
            log.debug("late or unknown reply dropped", extra={"execution_id": message.correlation_id})
            return
        try:
            future.set_result(reply_decoder.decode(message.body))
        except msgspec.DecodeError:
            # The caller learns at once (503 reply-lost) rather than after the whole timeout.
            log.error("undecodable reply", extra={"execution_id": message.correlation_id})
            future.set_exception(ReplyLost(message.correlation_id or ""))

    def fail_all(self, *_: object) -> None:
        """The connection closed: every pending reply is lost."""
        for correlation_id, future in list(self._waiting.items()):
            if not future.done():
                future.set_exception(ReplyLost(correlation_id))
