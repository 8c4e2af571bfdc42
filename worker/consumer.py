"""Deliveries in, executions out: decode, run, record, reply, then settle in one place.

Acknowledgement is decided only in `settle()`, from the table `SETTLEMENT`. A run that is
abandoned (the worker is stopping) settles nothing: closing the channel hands the message
back to the broker, to the head of its queue. `message.process()` is never used: it rejects
on any exception, CancelledError too. Every other failure after decoding is settled: a
workflow that raises is a failed run; a record the database refuses is replaced by a
minimal one and dead-lettered; anything else is BROKEN; a delivery held past its deadline
is settled by the watchdog (worker/watchdog.py). An unsettled delivery would hold a
prefetch slot until the channel closes, and stall the worker again after a restart.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import traceback
import uuid
from collections.abc import Container
from dataclasses import dataclass

import msgspec
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, AMQPError

from shared.broker.publishers import ConfirmedPublisher
from shared.db.executions import Status
from shared.errors import BrokerUnavailable, HooklineError, NotFound, RecordRefused
from shared.logs import run_context
from shared.runtime import tracing
from shared.spec.model import Retry
from shared.spec.schedule import SCHEDULE_METHOD
from shared.wire import topology
from shared.wire.messages import Invocation, RequestData, invocation_decoder
from worker.deliveries import Delivery
from worker.engine import Outcome, Workflow
from worker.execution import Finished, Reporter, reply_for
from worker.holds import Abandoned, LaneHolds, pause
from worker.retries import backoff_delay, retry_properties
from worker.steps.base import Answer
from worker.watchdog import Watchdog
from worker.workflows import WorkflowCache

log = logging.getLogger(__name__)

# A version that cannot be loaded will not load on a second try either.
_NO_RETRY = Retry(max_attempts=1)


class Lane(enum.Enum):
    """Where a delivery came from: the shared queue or an ordered trigger's queue."""

    SHARED = "shared"
    ORDERED = "ordered"


class Verdict(enum.Enum):
    """What became of a run."""

    DONE = "done"  # succeeded, or failed with the caller answered (no retry after that)
    RETRY = "retry"  # failed, attempts left
    GIVE_UP = "give_up"  # out of attempts, undecodable, or delivered too often
    HOLD = "hold"  # out of attempts where `on_exhausted: stop`
    BROKEN = "broken"  # the worker's own machinery raised or hung (not the workflow: that fails)


class Action(enum.Enum):
    """What `settle()` does with the delivery."""

    ACK = "ack"
    DELAY_THEN_ACK = "delay-then-ack"  # confirmed publish to a delay queue, then ack
    DEAD_LETTER = "dead-letter"  # reject without requeue: the queue's dead-letter exchange
    REQUEUE = "requeue"  # nack with requeue: redelivered, counted toward x-delivery-limit
    KEEP = "keep"  # nothing: the runner runs it again in place, or holds the lane


SETTLEMENT: dict[tuple[Verdict, Lane], Action] = {
    (Verdict.DONE, Lane.SHARED): Action.ACK,
    (Verdict.DONE, Lane.ORDERED): Action.ACK,
    # A shared run retries through a delay queue, so other messages are never held up.
    (Verdict.RETRY, Lane.SHARED): Action.DELAY_THEN_ACK,
    # An ordered lane retries in place. Never nack-requeue there: a single-active-consumer
    # quorum queue puts a requeued message at the *back* (measured on 3.10), breaking order.
    (Verdict.RETRY, Lane.ORDERED): Action.KEEP,
    (Verdict.GIVE_UP, Lane.SHARED): Action.DEAD_LETTER,
    (Verdict.GIVE_UP, Lane.ORDERED): Action.DEAD_LETTER,
    # `stop` needs a lane to stop; on the shared queue it gives up like `skip`.
    (Verdict.HOLD, Lane.SHARED): Action.DEAD_LETTER,
    # Unacknowledged with prefetch 1: nothing behind it runs until an operator answers.
    (Verdict.HOLD, Lane.ORDERED): Action.KEEP,
    # Maybe this worker only: again, on any worker; past x-delivery-limit the worker records
    # it dead (see `Runner._handle`) and the broker dead-letters it.
    (Verdict.BROKEN, Lane.SHARED): Action.REQUEUE,
    # Never requeue on an ordered lane (the back of the queue). `on_exhausted: stop` holds
    # the lane first (see `Runner._broken`); this is `skip`, or a stop that was answered so.
    (Verdict.BROKEN, Lane.ORDERED): Action.DEAD_LETTER,
}


def decide(ok: bool, attempt: int, retry: Retry, answered: bool) -> Verdict:
    """Done, retry, or out of attempts (give up, or hold where the trigger says `stop`)."""
    if ok or answered:
        return Verdict.DONE
    if attempt < retry.max_attempts:
        return Verdict.RETRY
    return Verdict.HOLD if retry.on_exhausted == "stop" else Verdict.GIVE_UP


def undecodable_stub(message: Delivery) -> Invocation | None:
    """What is known of a message that does not decode: its id and, from its routing key
    (`workspace.trigger`, see topology.routing_key), its trigger. None when either is missing."""
    workspace, dot, trigger = (message.routing_key or "").partition(".")
    try:
        execution_id = str(uuid.UUID(message.message_id or ""))
    except ValueError:
        return None
    if not (dot and workspace and trigger) or "." in trigger:
        return None
    request = RequestData(method="", path="")
    return Invocation(
        id=execution_id,
        workspace=workspace,
        trigger=trigger,
        version=0,
        mode="async",
        received_at=time.time(),
        request=request,
    )


@dataclass(frozen=True)
class Delay:
    """Where a shared run waits before its next attempt."""

    publisher: ConfirmedPublisher  # to the default exchange, which routes by queue name
    queue: str
    next_attempt: int
    runs: int


async def settle(message: Delivery, verdict: Verdict, lane: Lane, delay: Delay | None = None) -> Action:
    """The one place a delivery is acknowledged, delayed, dead-lettered or kept."""
    action = SETTLEMENT[(verdict, lane)]
    if message.orphaned and action is not Action.KEEP:
        # Its channel closed (a missed heartbeat: this host was cut off) and the broker has
        # it back, maybe run by another worker already. Publishing a delayed retry of it now,
        # on the reconnected link, would make a second copy run again over that one's record.
        log.warning("delivery taken back by the broker while it ran; not settled, it is redelivered")
        return action
    try:
        if action is Action.ACK:
            await message.ack()
        elif action is Action.DELAY_THEN_ACK:
            assert delay is not None
            try:
                await delay.publisher.publish(
                    message.body, retry_properties(message, delay.next_attempt, delay.runs), delay.queue
                )
            except BrokerUnavailable as exc:
                # No delay queue to be had: retry at once rather than hold the message.
                log.warning("retry not delayed (%s); requeued", exc)
                await message.nack(requeue=True)
                return action
            await message.ack()
        elif action is Action.DEAD_LETTER:
            await message.reject(requeue=False)
        elif action is Action.REQUEUE:
            await message.nack(requeue=True)
    except (*CONNECTION_EXCEPTIONS, AMQPError) as exc:
        # The channel is gone (broker restart): the broker redelivers it; the record upserts.
        log.warning("delivery not settled (%s); it will be redelivered", type(exc).__name__)
    return action


class Runner:
    """Runs one delivery from decode to settle."""

    def __init__(
        self,
        workflows: WorkflowCache,
        reporter: Reporter,
        holds: LaneHolds,
        delays: ConfirmedPublisher,
        invocations: ConfirmedPublisher,
        *,
        prefix: str,
        delivery_limit: int,
        stopping: asyncio.Event,
        paused: Container[tuple[str, str]] = frozenset(),
        watchdog: Watchdog | None = None,
    ) -> None:
        self._workflows = workflows
        self._reporter = reporter
        self._holds = holds
        self._delays = delays
        self._invocations = invocations
        self._prefix = prefix
        self._delivery_limit = delivery_limit
        self._stopping = stopping
        self._paused = paused  # (workspace, trigger) paused now, kept current by the worker
        self._watchdog = watchdog

    async def handle(self, message: Delivery, lane: Lane, queue: str) -> None:
        """The consume callback: run (again, while attempts are left in place), then settle."""
        try:
            invocation = invocation_decoder.decode(message.body)
        except (msgspec.DecodeError, RecursionError):
            log.error("undecodable message dead-lettered", extra={"queue": queue})
            # Nested past what msgpack decodes here: still a call the run log should show.
            if (stub := undecodable_stub(message)) is not None:
                await self._reporter.record_lost(stub, "the message could not be decoded; dead-lettered")
            await settle(message, Verdict.GIVE_UP, lane)
            return
        # The run's consumer span (tracing on), the child of the publish in the headers.
        traced = (
            tracing.running(message.headers, queue, invocation.workspace, invocation.trigger, invocation.id)
            if tracing.on
            else tracing.UNTRACED
        )
        with (
            run_context(
                workspace=invocation.workspace, trigger=invocation.trigger, execution_id=invocation.id
            ),
            traced,
        ):
            self._watch(message, lane, invocation, 0)
            try:
                again = False
                while await self._settled_whatever_fails(message, invocation, lane, queue, again):
                    again = True  # an operator answered `retry` on a lane stopped by a broken run
            except Abandoned:  # out of a failure's handling (a stopped lane's wait)
                log.info("stopping: execution handed back unsettled", extra={"execution_id": invocation.id})
            except Exception as exc:  # noqa: BLE001 - the failure's own handling failed: settle anyway
                log.error(
                    "settled as broken after %s", type(exc).__name__, extra={"execution_id": invocation.id}
                )
                if not message.settled:
                    await settle(message, Verdict.BROKEN, lane)
            finally:
                self._unwatch(message)

    async def _settled_whatever_fails(
        self, message: Delivery, invocation: Invocation, lane: Lane, queue: str, again: bool = False
    ) -> bool:
        """Run and settle; True when it must run again (see `_broken`; then `again`)."""
        try:
            if (
                lane is Lane.SHARED
                and not message.reply_to  # its caller is waiting: accepted, so answered
                and (invocation.workspace, invocation.trigger) in self._paused
                and not message.state.parked
                # A redelivery may have been run and recorded already: settle it as usual.
                and not message.state.redeliveries
                and await self._park(message, invocation)
            ):
                return False
            if not again and await self._run_elsewhere(message, invocation, lane):
                return False
            await self._handle(message, invocation, lane, queue)
        except Abandoned:
            log.info(
                "execution handed back unsettled (stopping, or taken back by the broker)",
                extra={"execution_id": invocation.id},
            )
        except RecordRefused as exc:
            await self._refused(message, invocation, lane, queue, str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure maps to a verdict, see _broken
            return await self._broken(message, invocation, lane, queue, exc)
        return False

    async def _handle(self, message: Delivery, invocation: Invocation, lane: Lane, queue: str) -> None:
        state = message.state
        redeliveries = state.redeliveries
        attempt = state.attempt
        runs = state.runs_before + 1 + redeliveries  # this run's number, for the record
        if redeliveries or state.replayed:
            # Runs retried in place before a crash, or before the message died, are recorded
            # but not counted in its headers: count on from the record.
            recorded_runs, recorded_status = await self._reporter.recorded(invocation)
            runs = max(runs, recorded_runs + 1)
            if lane is Lane.ORDERED and redeliveries and recorded_status == "retrying":
                # Retried in place, then handed back (a crash, a SIGTERM in the backoff): the
                # attempts made so far are in the record, not in the message. Go on counting.
                attempt = max(attempt, recorded_runs - state.runs_before + 1)
            if (
                redeliveries
                and not state.replayed
                and await self._settled_before(message, lane, queue, invocation, recorded_status)
            ):
                return
        if redeliveries >= self._delivery_limit:
            await self._delivered_too_often(message, lane, queue, invocation, redeliveries, runs)
            return
        held = (
            lane is Lane.ORDERED
            and redeliveries > 0
            and await self._holds.held(queue, invocation.id) is not None
        )
        if held:
            # Held before a restart: wait for the operator again rather than run it again.
            if await self._answer(message, queue) == "skip":
                await self._skip_held(message, invocation, queue)
                return
            attempt = 1
        while True:
            finished, retry = await self._run(message, lane, invocation, attempt, runs)
            verdict = decide(finished.outcome.ok, attempt, retry, bool(message.reply_to))
            if verdict is Verdict.RETRY and lane is Lane.ORDERED:
                await self._reporter.record(
                    invocation, finished, "retrying", reply_for(invocation, finished.outcome)
                )
                await self._backoff(message, backoff_delay(retry, attempt))
                attempt, runs = attempt + 1, runs + 1
                continue
            if verdict is Verdict.HOLD and lane is Lane.ORDERED:
                await self._reporter.record(
                    invocation, finished, "failed", reply_for(invocation, finished.outcome)
                )
                await self._holds.hold(
                    queue, invocation.workspace, invocation.trigger, invocation.id, finished.outcome.error
                )
                if await self._answer(message, queue) == "skip":
                    await self._skip_held(message, invocation, queue)
                    return
                attempt, runs, held = 1, runs + 1, True
                continue
            delay = self._delay(retry, attempt, runs) if verdict is Verdict.RETRY else None
            await asyncio.shield(self._finish(message, lane, invocation, verdict, finished, delay))
            if held:
                await self._holds.release(queue)
            return

    async def _run_elsewhere(self, message: Delivery, invocation: Invocation, lane: Lane) -> bool:
        """Settle a copy whose run another copy claimed; False: this copy runs.

        Two kinds of invocation may be published twice under one id: a schedule's tick (its
        leader died between the broker's confirm and its commit), and a keyed call (the
        claim-run mark: its publish went unconfirmed and the caller's retry published it
        again). The first copy to start claims the run in the run log; the other is settled
        unrun. A retry, a redelivery or a replay is a run of the claimed execution and runs.
        A call without the mark pays no claim.
        """
        state = message.state
        if (invocation.request.method != SCHEDULE_METHOD and not state.claim_run) or not state.first_copy:
            return False
        if await self._reporter.claim(invocation):
            return False
        copy = "schedule tick" if invocation.request.method == SCHEDULE_METHOD else "keyed call"
        log.info("a copy of this %s has run already: settled without a second run", copy)
        await settle(message, Verdict.DONE, lane)
        return True

    async def _park(self, message: Delivery, invocation: Invocation) -> bool:
        """Send a paused trigger's call met on the shared queue (a retry back from its delay
        queue, a call queued before the pause) through the invocations exchange again: the
        pause bound the trigger's key to its hold queue, where the resume finds it. Routing
        decides, not this worker's view of the pause, so nothing lands in a hold queue that
        is being deleted. False when it could not be published: it runs now."""
        key = topology.routing_key(invocation.workspace, invocation.trigger)
        state = message.state
        copy = retry_properties(message, state.attempt, state.runs_before + state.redeliveries, parked=True)
        try:
            await self._invocations.publish(message.body, copy, key)
        except BrokerUnavailable:
            return False
        log.info("paused: call sent on to the hold queue")
        # Confirmed before the ack: a lost ack means a second copy, never none.
        await settle(message, Verdict.DONE, Lane.SHARED)
        return True

    async def _settled_before(
        self, message: Delivery, lane: Lane, queue: str, invocation: Invocation, status: Status | None
    ) -> bool:
        """Settle, as recorded, a message whose final record was committed by a worker that
        stopped before settling it: a second run would repeat its side effects and its reply.
        A run held by a stopped lane is recorded `failed` too: that one waits for its operator."""
        if status not in ("succeeded", "failed", "dead"):
            return False
        if (
            status == "failed"
            and lane is Lane.ORDERED
            and await self._holds.held(queue, invocation.id) is not None
        ):
            return False
        log.info("redelivered after its run was recorded %s: settled without a second run", status)
        await settle(message, Verdict.GIVE_UP if status == "dead" else Verdict.DONE, lane)
        return True

    async def _run(
        self, message: Delivery, lane: Lane, invocation: Invocation, attempt: int, runs: int
    ) -> tuple[Finished, Retry]:
        started = time.time()

        async def answer_now(answer: Answer) -> None:
            # A `respond` with `continue: true`: the caller has its answer; the run goes on.
            reply = reply_for(invocation, Outcome(True, answer=answer))
            if reply is not None and message.reply_to:
                await self._reporter.reply(message, reply)

        try:
            workflow = await self._workflows.get(invocation.workspace, invocation.trigger, invocation.version)
        except NotFound as exc:
            return Finished(Outcome(False, error=str(exc)), runs, started, time.time()), _NO_RETRY
        # From now on the run is bounded by its own timeout; the record and reply by the margin.
        self._watch(message, lane, invocation, workflow.trigger.workflow_timeout)
        try:
            # A run after the first (a retry, a redelivery, a replayed dead letter) resumes.
            outcome = await workflow.run(invocation, attempt, resume=runs > 1, answer_now=answer_now)
        except Exception as exc:  # noqa: BLE001 - a failed run, retried as the trigger says
            # HooklineError says what went wrong; anything else (RecursionError over a body
            # nested too deep) by its type only: its message may quote the caller's data.
            error = str(exc) if isinstance(exc, HooklineError) else f"internal error: {type(exc).__name__}"
            outcome = Outcome(False, error=error)
        return Finished(outcome, runs, started, time.time()), workflow.trigger.retry

    def _delay(self, retry: Retry, attempt: int, runs: int) -> Delay:
        tier = topology.retry_tier(backoff_delay(retry, attempt))
        queue = topology.retry_queue_name(self._prefix, tier)
        return Delay(self._delays, queue, attempt + 1, runs)

    async def _finish(
        self,
        message: Delivery,
        lane: Lane,
        invocation: Invocation,
        verdict: Verdict,
        finished: Finished,
        delay: Delay | None = None,
    ) -> None:
        """Commit the record, answer a waiting caller, then settle (ack only what is durable)."""
        action = SETTLEMENT[(verdict, lane)]
        status: Status
        if action is Action.DEAD_LETTER:
            status = "dead"
        elif action is Action.DELAY_THEN_ACK:
            status = "retrying"
        else:
            status = "succeeded" if finished.outcome.ok else "failed"
        reply = reply_for(invocation, finished.outcome)
        answered = finished.outcome.answered_at is not None  # early, by `continue: true`: once
        waiting = reply is not None and bool(message.reply_to) and status != "retrying" and not answered
        failed = status in ("dead", "failed") and not finished.outcome.ok
        handlers = await self._error_handlers(invocation) if failed else None
        if handlers is not None:
            # The on_error steps are a run of their own: the watchdog gives them its deadline.
            self._watch(message, lane, invocation, handlers.trigger.workflow_timeout)
        if handlers is not None and not waiting:
            await handlers.handle_error(invocation, finished.outcome, finished.runs, status)
        await self._reporter.record(invocation, finished, status, reply)
        if waiting and reply is not None:
            await self._reporter.reply(message, reply)
        if handlers is not None and waiting:
            # The caller has its answer first; the record is written again with the handlers'
            # steps (same run number, counted once).
            await handlers.handle_error(invocation, finished.outcome, finished.runs, status)
            await self._reporter.record(invocation, finished, status, reply, count=False)
        await settle(message, verdict, lane, delay)

    async def _error_handlers(self, invocation: Invocation) -> Workflow | None:
        """The workflow whose `on_error` steps a run that ended for good failed calls for."""
        try:
            workflow = await self._workflows.get(invocation.workspace, invocation.trigger, invocation.version)
        except NotFound:
            return None  # no version, no handlers
        return workflow if workflow.on_error else None

    async def _skip_held(self, message: Delivery, invocation: Invocation, queue: str) -> None:
        await self._reporter.mark_dead(invocation, "dead-lettered by an operator from a stopped lane")
        await settle(message, Verdict.GIVE_UP, Lane.ORDERED)
        await self._holds.release(queue)

    async def _delivered_too_often(
        self, message: Delivery, lane: Lane, queue: str, invocation: Invocation, redeliveries: int, runs: int
    ) -> None:
        # The broker dead-letters it after this delivery anyway; do it knowingly.
        error = f"delivered {redeliveries + 1} times without being settled (did a worker crash?)"
        now = time.time()
        finished = Finished(Outcome(False, error=error), runs, now, now)
        await self._finish(message, lane, invocation, Verdict.GIVE_UP, finished)
        if lane is Lane.ORDERED and await self._holds.held(queue, invocation.id) is not None:
            # A lane stopped for longer than consumer_timeout x x-delivery-limit: it moves on.
            await self._holds.release(queue)

    async def _backoff(self, message: Delivery, seconds: float) -> None:
        """Wait before retrying in place; no deadline while it waits."""
        self._unwatch(message)
        await pause(self._stopping, seconds)
        if message.orphaned:
            # The broker took it back during the backoff (consumer_timeout): its redelivery
            # counts on from the record; two runs of it must not go on at once.
            raise Abandoned

    async def _answer(self, message: Delivery, queue: str) -> str:
        """The operator's answer to a stopped lane; no deadline while it waits."""
        self._unwatch(message)
        return await self._holds.answer(queue, lambda: message.orphaned)

    def _watch(self, message: Delivery, lane: Lane, invocation: Invocation, seconds: float) -> None:
        if self._watchdog is not None:
            self._watchdog.watch(message, seconds, lambda: self._overdue(message, lane, invocation))

    def _unwatch(self, message: Delivery) -> None:
        if self._watchdog is not None:
            self._watchdog.release(message)

    async def _overdue(self, message: Delivery, lane: Lane, invocation: Invocation) -> None:
        """The watchdog cancelled a run held past its deadline: settle its delivery."""
        log.error(
            "delivery held past its deadline: settled by the watchdog; this worker is not ready",
            extra={"execution_id": invocation.id},
        )
        if message.settled:
            return
        await settle(message, Verdict.BROKEN, lane)  # first: nothing else may settle it now
        if lane is Lane.ORDERED:
            await self._reporter.record_lost(
                invocation, "held past its deadline; dead-lettered by the watchdog"
            )

    async def _refused(
        self, message: Delivery, invocation: Invocation, lane: Lane, queue: str, error: str
    ) -> None:
        """The record was refused (a minimal one stands in for it): dead-letter the message."""
        if message.settled:
            return
        failed = reply_for(invocation, Outcome(False, error=error))
        if message.reply_to and failed is not None:
            await self._reporter.reply(message, failed)
        await settle(message, Verdict.GIVE_UP, lane)
        if lane is Lane.ORDERED and await self._holds.held(queue, invocation.id) is not None:
            await self._holds.release(queue)

    async def _broken(
        self, message: Delivery, invocation: Invocation, lane: Lane, queue: str, exc: Exception
    ) -> bool:
        """Settle after an unexpected exception; True when an operator asks to run it again."""
        # The frames without the message: it may quote the data being handled.
        frames = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
        log.error(
            "run broken by %s\nTraceback (most recent call last):\n%s",
            type(exc).__name__,
            frames,
            extra={"execution_id": invocation.id},
        )
        if message.settled:
            return False
        error = f"internal error: {type(exc).__name__}"
        if lane is Lane.ORDERED and await self._on_exhausted(invocation) == "stop":
            await self._holds.hold(queue, invocation.workspace, invocation.trigger, invocation.id, error)
            if await self._answer(message, queue) != "skip":
                await self._holds.release(queue)
                return True
            await self._holds.release(queue)
        if lane is Lane.ORDERED:
            await self._reporter.record_lost(invocation, f"{error}; dead-lettered")
        await settle(message, Verdict.BROKEN, lane)
        return False

    async def _on_exhausted(self, invocation: Invocation) -> str:
        try:
            workflow = await self._workflows.get(invocation.workspace, invocation.trigger, invocation.version)
        except Exception:  # noqa: BLE001 - no policy to be had: the default, skip
            return "skip"
        return workflow.trigger.retry.on_exhausted
