"""Dead letters for operators: moved from the dead-letter queue into PostgreSQL, listed in
pages with their executions' errors, replayed by id or by filter.

Moving is at least once: a batch is inserted, then acknowledged; a letter redelivered after
a crash in between lands on its own row again (keyed by message id). Replaying is at least
once too: publish to the invocations exchange, wait for the broker's confirm, only then
delete the row. The API, the console and the CLI all go through here: one join, one view.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from shared.broker.publishers import ConfirmedPublisher
from shared.db.deadletters import (
    LetterFilter,
    NewLetter,
    StoredLetter,
    as_uuid,
    delete_letter,
    letter_page,
    letters_to_replay,
    lock_letter,
    store_letters,
)
from shared.db.pool import Connection
from shared.errors import BrokerUnavailable, HooklineError
from shared.wire import topology
from shared.wire.amqp import republished, republished_headers

REPLAY_BATCH = 50  # rows read per page of a replay


class NotReplayable(HooklineError):
    """Raised for a dead letter that is not an invocation (nothing to route it to)."""

    problem_type = "not-replayable"


class InvocationHead(msgspec.Struct):
    """The three fields of an invocation a dead letter is filed under (the body is skipped)."""

    id: str
    workspace: str
    trigger: str


_head_decoder = msgspec.msgpack.Decoder(InvocationHead)
_headers_encoder = msgspec.msgpack.Encoder()
_headers_decoder = msgspec.msgpack.Decoder(dict[str, Any])


class DeadLetterView(msgspec.Struct, kw_only=True):
    """A dead letter and its execution's last state (None: never recorded)."""

    id: str
    workspace: str | None
    trigger: str | None
    reason: str
    queue: str
    died_at: datetime | None
    status: str | None = None
    attempts: int | None = None
    error: str | None = None


class DeadLetterPage(msgspec.Struct, kw_only=True):
    """A page of dead letters, newest first, and the cursor of the next (None: the last)."""

    items: list[DeadLetterView]
    next_cursor: str | None


def stored_letter(message: AbstractIncomingMessage, moved_at: datetime) -> NewLetter:
    """What to store of a message taken from the dead-letter queue (its `x-death` says where
    and why it died; `moved_at` stands in when it has none)."""
    try:
        head: InvocationHead | None = _head_decoder.decode(message.body)
    except (msgspec.DecodeError, RecursionError):
        head = None
    deaths: Any = (message.headers or {}).get("x-death") or [{}]
    last = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    died_at = last.get("time")
    # A letter with no id of its own is named by its body, so a redelivery finds its row.
    letter_id = (
        head.id if head else message.message_id or "sha256:" + hashlib.sha256(message.body).hexdigest()
    )
    return NewLetter(
        id=_text(str(letter_id)),
        execution_id=as_uuid(head.id) if head else None,
        workspace=_text(head.workspace) if head else None,
        trigger=_text(head.trigger) if head else None,
        reason=_text(str(last.get("reason", "unknown"))),
        queue=_text(str(last.get("queue", ""))),
        died_at=died_at.replace(tzinfo=died_at.tzinfo or UTC) if isinstance(died_at, datetime) else moved_at,
        body=message.body,
        headers=_headers_encoder.encode(_plain(republished_headers(message.headers))),
        content_type=_text(message.content_type) if message.content_type else None,
        type=_text(message.type) if message.type else None,
    )


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL: a letter carrying one must still be stored, not block the queue."""
    return value.replace("\x00", "\ufffd")


def _plain(headers: dict[str, Any]) -> dict[str, Any]:
    """Headers as msgpack can hold them (AMQP decimals become text)."""
    return {
        k: v if isinstance(v, str | int | float | bool | bytes | None) else str(v) for k, v in headers.items()
    }


async def page(connection: Connection, where: LetterFilter, limit: int) -> DeadLetterPage:
    """One page of dead letters with their executions' status, attempts and error."""
    rows, cursor = await letter_page(connection, where, limit)
    return DeadLetterPage(
        items=[
            DeadLetterView(
                id=r.id,
                workspace=r.workspace,
                trigger=r.trigger,
                reason=r.reason,
                queue=r.queue,
                died_at=r.died_at,
                status=r.status,
                attempts=r.attempts,
                error=r.error,
            )
            for r in rows
        ],
        next_cursor=cursor,
    )


async def every_letter(
    connection: Connection, where: LetterFilter, per_page: int = 500
) -> AsyncIterator[DeadLetterView]:
    """Every dead letter matching `where`, newest first, a page in memory at a time."""
    cursor = where.before
    while True:
        found = await page(connection, _after(where, cursor), per_page)
        for item in found.items:
            yield item
        if found.next_cursor is None:
            return
        cursor = found.next_cursor


def _after(where: LetterFilter, cursor: str | None) -> LetterFilter:
    return LetterFilter(where.workspace, where.trigger, where.since, where.until, where.ids, cursor)


@dataclass
class ReplayOutcome:
    """Which letters were put back on their triggers' routes, and which could not be (why)."""

    replayed: list[tuple[str, str]]  # (id, workspace/trigger)
    failed: list[tuple[str, str]]  # (id, error)

    @property
    def found(self) -> set[str]:
        return {x for x, _ in self.replayed} | {x for x, _ in self.failed}


async def replay(
    database: Connection,
    broker: AbstractConnection,
    prefix: str,
    where: LetterFilter,
    deadline: float,
    stop_on_failure: Callable[[HooklineError], bool] = lambda _: False,
) -> ReplayOutcome:
    """Replay every letter matching `where`: publish (confirmed), then delete its row.

    Each letter is locked, published and deleted in a transaction of its own, so two replays
    never publish the same row and a failure undoes nothing already replayed. A letter that
    cannot be put back (not an invocation, its trigger gone or not routed, its queue full)
    stays and is reported; `stop_on_failure(error)` true re-raises it instead. A broker that
    does not answer at all (BrokerUnavailable itself) ends the replay: the rest would wait
    out the same deadline one by one.
    """
    outcome = ReplayOutcome([], [])
    channel = await broker.channel(publisher_confirms=True, on_return_raises=True)
    try:
        publisher = ConfirmedPublisher(channel, topology.invocations_exchange(prefix), deadline)
        cursor = where.before
        while True:
            batch = await letters_to_replay(database, _after(where, cursor), REPLAY_BATCH)
            for letter in batch:
                async with database.transaction():
                    if not await lock_letter(database, letter.id, letter.seq):
                        continue
                    try:
                        path = await _publish(publisher, letter)
                    except HooklineError as exc:
                        if stop_on_failure(exc) or type(exc) is BrokerUnavailable:
                            raise
                        outcome.failed.append((letter.id, str(exc)))
                        continue
                    await delete_letter(database, letter.id, letter.seq)
                outcome.replayed.append((letter.id, path))
            if len(batch) < REPLAY_BATCH:
                return outcome
            cursor = str(batch[-1].seq)
    finally:
        await channel.close()


async def _publish(publisher: ConfirmedPublisher, letter: StoredLetter) -> str:
    if letter.workspace is None or letter.trigger is None:
        raise NotReplayable(f"dead letter {letter.id} is not an invocation; it cannot be replayed")
    properties = republished(
        letter.id,
        _headers_decoder.decode(letter.headers),
        content_type=letter.content_type,
        message_type=letter.type,
        # A fresh budget of attempts; the ordering key header (if any) stays.
        **{topology.ATTEMPT_HEADER: None, topology.RUNS_HEADER: None, topology.REPLAYED_HEADER: True},
    )
    await publisher.publish(letter.body, properties, topology.routing_key(letter.workspace, letter.trigger))
    return f"{letter.workspace}/{letter.trigger}"


async def move_dead_letters(
    broker: AbstractConnection, database: Connection, prefix: str, batch: int = 100
) -> int:
    """Move what the dead-letter queue holds into the table, a batch at a time: insert, then
    ack the batch (a crash in between redelivers it onto the same rows). The count moved."""
    channel = await broker.channel()
    try:
        queue = await channel.get_queue(topology.dead_letter_queue_name(prefix), ensure=False)
        moved = 0
        while True:
            messages: list[AbstractIncomingMessage] = []
            while len(messages) < batch and (message := await queue.get(no_ack=False, fail=False)):
                messages.append(message)
            if not messages:
                return moved
            now = datetime.now(UTC)
            await store_letters(database, [stored_letter(m, now) for m in messages])
            await messages[-1].ack(multiple=True)
            moved += len(messages)
    finally:
        await channel.close()
