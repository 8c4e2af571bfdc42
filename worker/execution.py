"""What a run leaves behind: the execution record (durable before any ack) and the reply."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import aiormq
import asyncpg

from shared.broker.publishers import ReplyPublisher
from shared.db.executions import ExecutionRecord, Status, claim_execution, recorded_state
from shared.db.lanes import mark_dead
from shared.db.retry import retry_db
from shared.errors import BrokerUnavailable, RecordRefused
from shared.runtime import tracing
from shared.wire.messages import Invocation, Reply, answer, reply_encoder
from worker import metrics
from worker.deliveries import Delivery
from worker.engine import DEFAULT_OUTPUT_LIMIT, SERVER_ERROR, Outcome, truncated
from worker.recorder import Recorder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finished:
    """One run: how it ended, the how-many-th run it was, when it started and ended."""

    outcome: Outcome
    runs: int
    started: float
    finished: float


class Reporter:
    """Records runs (through the batching Recorder) and answers waiting callers."""

    def __init__(
        self,
        recorder: Recorder,
        replies: ReplyPublisher,
        pool: asyncpg.Pool,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> None:
        self._recorder = recorder
        self._replies = replies
        self._pool = pool
        self._output_limit = output_limit  # bytes of JSON kept, as for each step's output

    async def record(
        self,
        invocation: Invocation,
        finished: Finished,
        status: Status,
        reply: Reply | None,
        *,
        count: bool = True,
    ) -> None:
        """Return once the record is committed (waits out a database outage).

        `reply` is the run's answer (`reply_for`), recorded as the caller gets it.

        A record the database refuses (or that cannot be encoded: a body nested too deep)
        is replaced by a minimal failed one, and RecordRefused tells the caller to
        dead-letter the message: it would be refused again on every delivery.
        `count` False: the same run written again (its on_error steps added), not counted again.
        """
        try:
            await self._recorder.record(self._record_of(invocation, finished, status, reply))
        except Exception as exc:  # noqa: BLE001 - any refusal; an outage never gets here
            await self._record_refused(invocation, finished, exc)
            raise RecordRefused(f"the execution could not be recorded ({type(exc).__name__})") from None
        if count:
            self._observe(invocation, finished, status)

    async def _record_refused(self, invocation: Invocation, finished: Finished, exc: Exception) -> None:
        error = (
            f"the execution could not be recorded ({type(exc).__name__}); this minimal record"
            " stands in for it and the message was dead-lettered"
        )
        await self.record_lost(invocation, error, finished)

    async def record_lost(self, invocation: Invocation, error: str, finished: Finished | None = None) -> None:
        """A minimal dead record (id, trigger, error) for a run whose own record is not to be
        had; it replaces what was recorded before. Logged, not raised, when refused too."""
        try:
            if finished is None:
                # Counted on from the record: an upsert with fewer runs than recorded is ignored.
                runs, _ = await self.recorded(invocation)
                now = time.time()
                finished = Finished(Outcome(False, error=error), max(runs, 1), now, now)
            await self._recorder.record(
                ExecutionRecord(
                    id=invocation.id,
                    workspace=invocation.workspace,
                    trigger=invocation.trigger,
                    version=invocation.version,
                    status="dead",
                    attempts=finished.runs,
                    received_at=invocation.received_at,
                    started_at=finished.started,
                    finished_at=finished.finished,
                    request=None,
                    error=error,
                    replay_of=invocation.replay_of,
                    caller=invocation.caller,
                )
            )
        except Exception as again:  # noqa: BLE001 - the dead letter queue still holds the call
            log.error(
                "not even a minimal record of execution %s (%s)",
                invocation.id,
                type(again).__name__,
                extra={"execution_id": invocation.id},
            )
            return
        self._observe(invocation, finished, "dead")

    def _record_of(
        self, invocation: Invocation, finished: Finished, status: Status, reply: Reply | None
    ) -> ExecutionRecord:
        outcome = finished.outcome
        return ExecutionRecord(
            id=invocation.id,
            workspace=invocation.workspace,
            trigger=invocation.trigger,
            version=invocation.version,
            status=status,
            attempts=finished.runs,
            received_at=invocation.received_at,
            started_at=finished.started,
            finished_at=finished.finished,
            request=invocation.request,
            output=truncated(outcome.output_to_record, self._output_limit),
            # Whole, as the caller got it: a repeated idempotency key is answered from it.
            response=reply,
            steps=outcome.steps,
            error=outcome.error,
            replay_of=invocation.replay_of,
            caller=invocation.caller,
            # The run's trace (tracing on; the span notes the status). A record without one
            # keeps the trace id recorded before.
            trace_id=tracing.recorded(status) if tracing.on else None,
        )

    def _observe(self, invocation: Invocation, finished: Finished, status: Status) -> None:
        metrics.observe(
            invocation.workspace,
            invocation.trigger,
            status,
            invocation.received_at,
            finished.started,
            finished.finished,
        )
        log.info(
            "execution %s",
            status,
            extra={
                "workspace": invocation.workspace,
                "trigger": invocation.trigger,
                "execution_id": invocation.id,
                "attempt": finished.runs,
                "duration_ms": round((finished.finished - finished.started) * 1000, 3),
            },
        )

    async def claim(self, invocation: Invocation) -> bool:
        """Record `invocation` as started unless it is recorded already (False: do not run it).

        For a message that may have been published twice under one id (a schedule's tick).
        """
        now = time.time()
        started = Finished(Outcome(True), 0, now, now)
        record = self._record_of(invocation, started, "running", None)

        async def insert() -> bool:
            async with self._pool.acquire() as connection:
                return await claim_execution(connection, record)

        return await retry_db(insert)

    async def recorded(self, invocation: Invocation) -> tuple[int, Status | None]:
        """Runs of this execution already recorded, and its recorded status (waits out an outage)."""

        async def read() -> tuple[int, Status | None]:
            async with self._pool.acquire() as connection:
                return await recorded_state(connection, invocation.id)

        return await retry_db(read)

    async def mark_dead(self, invocation: Invocation, reason: str) -> None:
        """Mark an already recorded execution dead (no new run)."""

        async def mark() -> None:
            async with self._pool.acquire() as connection:
                await mark_dead(connection, invocation.id)

        await retry_db(mark)
        metrics.DEAD.labels(invocation.workspace, invocation.trigger).inc()
        log.info("execution dead: %s", reason, extra={"execution_id": invocation.id})

    async def reply(self, message: Delivery, reply: Reply) -> None:
        """Answer the caller waiting on the ingress (at most once: the record is the truth)."""
        properties = aiormq.spec.Basic.Properties(
            correlation_id=message.correlation_id, message_id=reply.execution_id, delivery_mode=1
        )
        try:
            # The body is bytes already (reply_for encoded it): nothing here can fail to encode.
            await self._replies.publish(reply_encoder.encode(reply), properties, str(message.reply_to))
        except BrokerUnavailable as exc:
            # The caller can read the record from the status URL.
            log.warning("reply not sent (%s)", exc, extra={"execution_id": reply.execution_id})


# A failed run's answer by its problem type: the workflow failing is ours (500); an answer
# the workflow decided that cannot be sent is a bad answer from upstream of the ingress (502).
_FAILED = {
    "workflow-failed": (500, "The workflow failed"),
    "answer-invalid": (502, "The workflow's answer cannot be sent"),
}


def reply_for(invocation: Invocation, outcome: Outcome) -> Reply | None:
    """The answer for a request-response call: the workflow's, its output, or a problem.

    Built once per run; the record, the live reply and an idempotent repeat all use it.
    """
    if invocation.mode != "request_response":
        return None
    if outcome.answer is not None:
        # The workflow's own answer, a 5xx too (the run is then recorded failed).
        status = outcome.answer.status
        try:
            return answer(
                invocation.id,
                status,
                outcome.answer.headers,
                outcome.answer.body,
                failed=status >= SERVER_ERROR,
            )
        except (RecursionError, OverflowError, TypeError, ValueError) as exc:
            return _unsendable(invocation, exc)
    if not outcome.ok:
        slug = outcome.problem_type if outcome.problem_type in _FAILED else "workflow-failed"
        status, title = _FAILED[slug]
        return answer(
            invocation.id,
            status,
            {"content-type": "application/problem+json"},
            {
                "type": f"/problems/{slug}",
                "title": title,
                "status": status,
                "detail": outcome.error,
                "execution_id": invocation.id,
            },
            failed=True,
        )
    try:
        return answer(invocation.id, 200, {}, outcome.output)
    except (RecursionError, OverflowError, TypeError, ValueError) as exc:
        return _unsendable(invocation, exc)


def _unsendable(invocation: Invocation, exc: BaseException) -> Reply | None:
    # An answer JSON cannot carry (nested past msgspec's depth): a problem, not a timeout.
    return reply_for(invocation, Outcome(False, error=f"the answer cannot be sent ({type(exc).__name__})"))
