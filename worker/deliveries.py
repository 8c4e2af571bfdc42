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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiormq
import msgspec
from aio_pika.abc import AbstractRobustChannel
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.abc import DeliveredMessage

from shared.broker.link import quietly
from shared.wire import topology

log = logging.getLogger(__name__)

RECONSUME_SECONDS = 1.0


class Acks:
    """The acknowledgements of one channel, coalesced: one `basic.ack(multiple)` per batch.

    A worker's records are committed in groups, so many runs are acked in the same turn
    of the event loop; one frame per ack was a sixth of a worker's CPU under `make bench`.
    Acks asked for in one turn go out together at its end: every acked tag below the
    lowest delivery still unsettled on the channel in one `multiple` ack (which settles
    everything up to its tag, so it never reaches past an unsettled one), the rest one by
    one. An ack with nothing to wait for (the channel's only delivery: an ordered lane),
    rejects and nacks are sent at once. One lock keeps the frames in the order decided.
    """

    __slots__ = ("_channel", "_flushing", "_lock", "_pending", "_unsettled")

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self._channel = channel
        self._unsettled: set[int] = set()
        self._pending: list[int] = []
        self._flushing = False
        self._lock = asyncio.Lock()

    @property
    def channel_closed(self) -> bool:
        return bool(self._channel.is_closed)

    def delivered(self, tag: int) -> None:
        self._unsettled.add(tag)

    async def ack(self, tag: int) -> None:
        """Acknowledge, with the other acks of this turn of the loop."""
        async with self._lock:
            if not self._pending and self._unsettled == {tag}:
                self._unsettled.discard(tag)
                await self._channel.basic_ack(tag, wait=False)
                return
        self._pending.append(tag)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush_soon)

    async def settle_now(self, tag: int, requeue: bool, reject: bool) -> None:
        """Reject or nack at once (a `multiple` ack never covers it: it is settled)."""
        async with self._lock:
            self._unsettled.discard(tag)
            if reject:
                await self._channel.basic_reject(tag, requeue=requeue, wait=False)
            else:
                await self._channel.basic_nack(tag, requeue=requeue, wait=False)

    def _flush_soon(self) -> None:
        self._flushing = False
        task = asyncio.ensure_future(self.flush())
        task.add_done_callback(_log_failure)

    async def flush(self) -> None:
        """Send the acks asked for so far."""
        async with self._lock:
            pending, self._pending = sorted(self._pending), []
            if not pending:
                return
            self._unsettled.difference_update(pending)
            floor = min(self._unsettled, default=None)
            covered = [tag for tag in pending if floor is None or tag < floor]
            if len(covered) > 1:
                await self._channel.basic_ack(covered[-1], multiple=True, wait=False)
            elif covered:
                await self._channel.basic_ack(covered[0], wait=False)
            for tag in pending[len(covered) :]:
                await self._channel.basic_ack(tag, wait=False)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        # The channel went away: its unacked deliveries go back to the queue, as for any ack
        # that could not be sent.
        log.warning("acks not sent (%s); the broker redelivers those messages", type(exc).__name__)


class DeliveryState(msgspec.Struct, frozen=True, gc=False):
    """What a delivery's headers say of its history, read once as it arrives (`delivery_state`).

    Two counters, kept apart on purpose (worker/retries.py): `attempt` counts runs that
    failed and were retried (`x-hookline-attempt`, 1 on a first run); `redeliveries` counts
    deliveries no worker settled (the quorum queue's `x-delivery-count`).
    """

    attempt: int = 1
    runs_before: int = 0  # runs recorded before this copy was published (x-hookline-runs)
    redeliveries: int = 0
    replayed: bool = False  # an operator put it back (a dead letter, a resume)
    parked: bool = False  # a worker sent it on towards a paused trigger's hold queue already
    claim_run: bool = False  # may be published twice under its id (a keyed call): claim first

    @property
    def first_copy(self) -> bool:
        """Whether no run of it can have started: not a retry, a redelivery or a replay."""
        return self.attempt == 1 and self.runs_before == 0 and self.redeliveries == 0 and not self.replayed


FIRST_DELIVERY = DeliveryState()  # no headers: a call as the ingress published it


def delivery_state(headers: Mapping[str, Any] | None) -> DeliveryState:
    """The state `headers` describe (a header of the wrong type counts as absent)."""
    if not headers:
        return FIRST_DELIVERY
    get = headers.get
    attempt, runs, redeliveries = get(_ATTEMPT, 1), get(_RUNS, 0), get(_DELIVERY_COUNT, 0)
    replayed, parked, claim_run = bool(get(_REPLAYED)), bool(get(_PARKED)), get(_CLAIM_RUN) is True
    if attempt == 1 and runs == 0 and redeliveries == 0 and not (replayed or parked or claim_run):
        # Most deliveries: a first run (the quorum queue's count at 0 is often its only header).
        return FIRST_DELIVERY
    return DeliveryState(
        _count(attempt, 1), _count(runs, 0), _count(redeliveries, 0), replayed, parked, claim_run
    )


_ATTEMPT, _RUNS, _DELIVERY_COUNT = topology.ATTEMPT_HEADER, topology.RUNS_HEADER, "x-delivery-count"
_REPLAYED, _PARKED, _CLAIM_RUN = topology.REPLAYED_HEADER, topology.PARKED_HEADER, topology.CLAIM_RUN_HEADER


def _count(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class Delivery:
    """One delivered message: its body, the properties hookline reads, its state (read once
    from its headers), and its settlement."""

    __slots__ = ("_acks", "_properties", "_settled", "body", "delivery_tag", "routing_key", "state")

    def __init__(self, message: DeliveredMessage, acks: Acks) -> None:
        self.body: bytes = message.body
        self._properties = message.header.properties
        self.state = delivery_state(self._properties.headers)
        self._acks = acks
        self.delivery_tag: int | None = message.delivery_tag
        self.routing_key: str | None = message.routing_key
        self._settled = False
        if self.delivery_tag is not None:
            acks.delivered(self.delivery_tag)

    @property
    def headers(self) -> dict[str, Any] | None:
        """As delivered, for a copy published again (`state` is what the worker reads of them)."""
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

    @property
    def orphaned(self) -> bool:
        """Whether its channel closed: the broker took it back (a `consumer_timeout`, a
        channel error) and delivers it again; this copy can no longer be settled."""
        return self._acks.channel_closed

    @property
    def settled(self) -> bool:
        """Whether this worker acked, rejected or nacked it already."""
        return self._settled

    def _take(self) -> int:
        # Settling twice would make the broker close the channel (unknown delivery tag).
        if self._settled or self.delivery_tag is None:
            raise aiormq.exceptions.AMQPError("the delivery is already settled (or was never to be)")
        self._settled = True
        return self.delivery_tag

    async def ack(self) -> None:
        """Acknowledge: the broker forgets the message (see Acks: maybe at the end of this turn)."""
        await self._acks.ack(self._take())

    async def reject(self, requeue: bool = False) -> None:
        """Reject: dead-lettered (or dropped) unless `requeue`."""
        await self._acks.settle_now(self._take(), requeue, reject=True)

    async def nack(self, requeue: bool = True) -> None:
        """Negative acknowledgement: back to the queue when `requeue`."""
        await self._acks.settle_now(self._take(), requeue, reject=False)


Callback = Callable[[Delivery], Awaitable[None]]


class RawConsumer:
    """One consumer of `queue` on a robust channel, surviving the channel's reopening."""

    def __init__(self, channel: AbstractRobustChannel, queue: str, callback: Callback) -> None:
        self._channel = channel
        self.queue = queue
        self._callback = callback
        self._underlay: aiormq.abc.AbstractChannel | None = None
        self._acks: Acks | None = None
        self._tag: str | None = None
        self._cancelled = False
        self._retrying: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Consume now (errors raise), and again after every reopening of the channel."""
        await self._consume()
        self._channel.reopen_callbacks.add(self._on_reopen)

    async def _consume(self) -> None:
        underlay = await self._channel.get_underlay_channel()
        # Delivery tags count per channel: a reopened channel gets acks of its own.
        acks = Acks(underlay)

        async def deliver(message: DeliveredMessage) -> None:
            await self._callback(Delivery(message, acks))

        result = await underlay.basic_consume(self.queue, deliver)
        self._underlay, self._acks, self._tag = underlay, acks, result.consumer_tag
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

    async def flush(self) -> None:
        """Send the acks asked for so far now (before the channel is closed)."""
        if self._acks is not None:
            await self._acks.flush()

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
            await quietly(underlay.basic_cancel(tag), f"cancelling the consumer of {self.queue}")
