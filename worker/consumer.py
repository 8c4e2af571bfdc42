"""Deliveries in, executions out: decode, run, record, reply, then settle in one place.

Acknowledgement is decided only in `settle()`. A run that is cancelled (shutdown) settles
nothing: closing the channel hands the message back to the broker, to the head of its
queue. `message.process()` is never used: it rejects on any exception, CancelledError too.
"""

from __future__ import annotations

import enum
import logging
import time
from typing import Any

import aio_pika
import msgspec
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from shared.db.executions import ExecutionRecord
from shared.errors import HooklineError, NotFound
from shared.messages import Invocation, Reply, invocation_decoder, reply_encoder
from worker.engine import Outcome
from worker.recorder import Recorder
from worker.workflows import WorkflowCache

log = logging.getLogger(__name__)


class Lane(enum.Enum):
    """Where a delivery came from: the shared queue or an ordered trigger's queue."""

    SHARED = "shared"
    ORDERED = "ordered"


class Verdict(enum.Enum):
    """What became of a delivery."""

    DONE = "done"  # recorded (succeeded or failed for good): ack
    POISON = "poison"  # not an invocation at all: dead-letter it


class Runner:
    """Runs one delivery from decode to settle."""

    def __init__(self, workflows: WorkflowCache, recorder: Recorder, replies: AbstractExchange) -> None:
        self._workflows = workflows
        self._recorder = recorder
        self._replies = replies

    async def handle(self, message: AbstractIncomingMessage, lane: Lane) -> None:
        """The consume callback: run, then settle."""
        try:
            invocation = invocation_decoder.decode(message.body)
        except (msgspec.DecodeError, RecursionError):
            log.error("undecodable message dead-lettered", extra={"queue": lane.value})
            await settle(message, Verdict.POISON)
            return
        attempt = _attempt(message)
        started = time.time()
        outcome = await self._run(invocation, attempt)
        finished = time.time()
        reply = _reply(invocation, outcome)
        await self._recorder.record(
            ExecutionRecord(
                id=invocation.id,
                workspace=invocation.workspace,
                trigger=invocation.trigger,
                version=invocation.version,
                status="succeeded" if outcome.ok else "failed",
                attempts=attempt,
                received_at=invocation.received_at,
                started_at=started,
                finished_at=finished,
                request=invocation.request,
                output=outcome.output,
                response=msgspec.to_builtins(reply) if reply is not None else None,
                steps=outcome.steps,
                error=outcome.error,
                replay_of=invocation.replay_of,
            )
        )
        if reply is not None and message.reply_to:
            await self._send_reply(message, reply)
        log.info(
            "execution %s",
            "succeeded" if outcome.ok else "failed",
            extra={
                "workspace": invocation.workspace,
                "trigger": invocation.trigger,
                "execution_id": invocation.id,
                "attempt": attempt,
                "duration_ms": round((finished - started) * 1000, 3),
            },
        )
        await settle(message, Verdict.DONE)

    async def _run(self, invocation: Invocation, attempt: int) -> Outcome:
        try:
            workflow = await self._workflows.get(invocation.workspace, invocation.trigger, invocation.version)
        except NotFound as exc:
            return Outcome(False, error=str(exc))
        try:
            return await workflow.run(invocation, attempt)
        except HooklineError as exc:
            return Outcome(False, error=str(exc))

    async def _send_reply(self, message: AbstractIncomingMessage, reply: Reply) -> None:
        # Direct reply-to: published without `mandatory`, or RabbitMQ also returns it (DESIGN).
        try:
            await self._replies.publish(
                aio_pika.Message(reply_encoder.encode(reply), correlation_id=message.correlation_id),
                routing_key=str(message.reply_to),
                mandatory=False,
            )
        except aio_pika.exceptions.AMQPError as exc:
            # The record is the truth; the caller can read it from the status URL.
            log.warning(
                "reply not sent (%s)",
                type(exc).__name__,
                extra={"execution_id": reply.execution_id},
            )


async def settle(message: AbstractIncomingMessage, verdict: Verdict) -> None:
    """The one place a delivery is acknowledged or rejected."""
    if verdict is Verdict.DONE:
        await message.ack()
    elif verdict is Verdict.POISON:
        await message.reject(requeue=False)


def _attempt(message: AbstractIncomingMessage) -> int:
    # Quorum queues count redeliveries (a crashed worker, a dropped connection).
    count: Any = (message.headers or {}).get("x-delivery-count", 0)
    return (int(count) if isinstance(count, int) else 0) + 1


def _reply(invocation: Invocation, outcome: Outcome) -> Reply | None:
    if invocation.mode != "request_response":
        return None
    if not outcome.ok:
        return Reply(
            execution_id=invocation.id,
            status=500,
            headers={"content-type": "application/problem+json"},
            body={
                "type": "/problems/workflow-failed",
                "title": "The workflow failed",
                "status": 500,
                "detail": outcome.error,
                "execution_id": invocation.id,
            },
            failed=True,
        )
    if outcome.answer is not None:
        return Reply(
            execution_id=invocation.id,
            status=outcome.answer.status,
            headers=outcome.answer.headers,
            body=outcome.answer.body,
        )
    return Reply(execution_id=invocation.id, status=200, body=outcome.output)
