"""The dead-letter queue for operators: read it without losing anything, replay from it.

Reading is `basic.get` without ack until the queue has given what it held: taken messages
stay unacknowledged (so they are not handed out twice), and closing the reading channel
hands back every one not replayed. Replaying is at least once: publish to the invocations
exchange, wait for the broker's confirm, only then ack the dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
import msgspec
from aio_pika.abc import AbstractConnection, AbstractExchange, AbstractIncomingMessage, DeliveryMode

from shared.broker.publishers import publish_confirmed
from shared.db import locks
from shared.db.pool import Connection
from shared.errors import BrokerUnavailable, HooklineError
from shared.wire import topology
from shared.wire.amqp import republished_headers
from shared.wire.messages import Invocation, invocation_decoder

# One look at the dead-letter queue at a time, across processes: a look takes every letter
# (unacknowledged), so a second look at the same time would see none of them. A look waits
# this long for another to end.
LOOK_WAIT_SECONDS = 15.0


class DeadLettersBusy(BrokerUnavailable):
    """Raised when another look at the dead-letter queue does not end in time (503)."""

    problem_type = "dead-letters-busy"


class NotReplayable(HooklineError):
    """Raised for a dead letter that is not an invocation (nothing to route it to)."""

    problem_type = "not-replayable"


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter as an operator sees it."""

    id: str
    workspace: str | None
    trigger: str | None
    reason: str  # rejected (out of attempts), delivery_limit (never settled), ...
    queue: str  # where it died
    died_at: datetime | None

    @property
    def trigger_path(self) -> str:
        return f"{self.workspace}/{self.trigger}"


def describe(message: AbstractIncomingMessage) -> tuple[DeadLetter, Invocation | None]:
    """What a dead letter is, from its body and the broker's `x-death` header."""
    try:
        invocation: Invocation | None = invocation_decoder.decode(message.body)
    except (msgspec.DecodeError, RecursionError):
        invocation = None
    deaths: Any = (message.headers or {}).get("x-death") or [{}]
    last = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    died_at = last.get("time")
    letter = DeadLetter(
        id=invocation.id if invocation else str(message.message_id),
        workspace=invocation.workspace if invocation else None,
        trigger=invocation.trigger if invocation else None,
        reason=str(last.get("reason", "unknown")),
        queue=str(last.get("queue", "")),
        died_at=died_at if isinstance(died_at, datetime) else None,
    )
    return letter, invocation


class DeadLetters:
    """An open look at the dead-letter queue; what is not replayed goes back on exit."""

    def __init__(self, connection: AbstractConnection, prefix: str, publish_timeout: float = 10.0) -> None:
        self._connection = connection
        self._prefix = prefix
        self._timeout = publish_timeout
        self.taken: list[tuple[DeadLetter, AbstractIncomingMessage]] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(
        cls, connection: AbstractConnection, prefix: str, database: Connection
    ) -> AsyncIterator[DeadLetters]:
        """Take every dead letter (unacknowledged); hand back the rest on exit. `database`
        holds the lock that makes looks (API, console, CLI) take turns."""
        try:
            async with asyncio.timeout(LOOK_WAIT_SECONDS):
                await database.execute("select pg_advisory_lock($1)", locks.DEAD_LETTER_LOOK)
        except TimeoutError:
            raise DeadLettersBusy("another look at the dead letters is taking long; try again") from None
        try:
            async with cls._taken(connection, prefix) as letters:
                yield letters
        finally:
            await database.execute("select pg_advisory_unlock($1)", locks.DEAD_LETTER_LOOK)

    @classmethod
    @contextlib.asynccontextmanager
    async def _taken(cls, connection: AbstractConnection, prefix: str) -> AsyncIterator[DeadLetters]:
        letters = cls(connection, prefix)
        reader = await connection.channel()
        # Confirms, and returns raised: an unroutable replay must not ack its dead letter.
        publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            letters._exchange = await publisher.get_exchange(
                topology.invocations_exchange(prefix), ensure=False
            )
            queue = await reader.get_queue(topology.dead_letter_queue_name(prefix), ensure=True)
            # Bounded by what was there at the start: returned letters never come round again.
            count = queue.declaration_result.message_count or 0
            for _ in range(count):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                letters.taken.append((describe(message)[0], message))
            yield letters
        finally:
            await reader.close()
            await publisher.close()

    _exchange: AbstractExchange

    def select(self, ids: set[str] | None, workspace: str | None, trigger: str | None) -> list[DeadLetter]:
        """The taken letters with one of `ids` (all if None) of the trigger (any if None)."""
        return [
            letter
            for letter, _ in self.taken
            if (ids is None or letter.id in ids)
            and (workspace is None or letter.workspace == workspace)
            and (trigger is None or letter.trigger == trigger)
        ]

    async def replay(self, letter: DeadLetter) -> None:
        """Publish it to its trigger's route (confirmed), then ack the dead letter.

        Raises BrokerUnavailable (NotRouted when the trigger no longer routes anywhere) or
        NotReplayable; the dead letter then stays where it is.
        """
        message = next(m for x, m in self.taken if x == letter)
        if letter.workspace is None or letter.trigger is None:
            raise NotReplayable(f"dead letter {letter.id} is not an invocation; it cannot be replayed")
        copy = aio_pika.Message(
            message.body,
            # A fresh budget of attempts; the ordering key header (if any) stays.
            headers=republished_headers(
                message.headers,
                **{topology.ATTEMPT_HEADER: None, topology.RUNS_HEADER: None, topology.REPLAYED_HEADER: True},
            ),
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            content_type=message.content_type,
            type=message.type,
        )
        key = topology.routing_key(letter.workspace, letter.trigger)
        await publish_confirmed(self._exchange, copy, key, self._timeout)
        await message.ack()
