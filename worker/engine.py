"""Run a trigger's workflow: steps in order, each recorded, until the end or `respond`.

A step with effects (an http POST, a writing query) is checkpointed once it succeeded, before
the next step runs; a run resumed (a retry, a redelivery) takes the checkpointed output of
such a step instead of running it again, and recomputes the pure steps around it.

A condition's chosen steps run right after it. Each step may have its own timeout, and the
whole run has the trigger's `workflow_timeout`; whichever passes first ends the run as
failed, naming the step that was running. A step's record keeps its output up to
`output_limit` bytes of JSON; past that, a preview marked as truncated.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from shared.db.checkpoints import Checkpoint
from shared.errors import HooklineError
from shared.runtime import tracing
from shared.spec.model import Trigger
from shared.spec.steps import StepRetry, status_listed
from shared.wire.messages import Invocation
from worker.steps import compile_step
from worker.steps.base import (
    SAME_AS_OUTPUT,
    Answer,
    AnswerNow,
    Resources,
    RunContext,
    Runnable,
    StepFailed,
    scrub,
    scrub_value,
)

DEFAULT_OUTPUT_LIMIT = 64 * 1024
SERVER_ERROR = 500
_to_builtins = msgspec.to_builtins
_json = msgspec.json.Encoder()
log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How a run ended: its output, the answer if one was decided, every step's record."""

    ok: bool
    output: Any = None
    answer: Answer | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    # The output as the record keeps it, when a step asked for a copy (secrets scrubbed).
    recorded_output: Any = SAME_AS_OUTPUT
    # Secret values of the connections the run used: the record of the run is scrubbed of them.
    secrets: frozenset[str] = frozenset()
    # Why it failed, as the caller's problem type: `answer-invalid` is the workflow's answer
    # refused (answered 502), anything else the workflow failing (500).
    problem_type: str = "workflow-failed"
    # When a `respond` with `continue: true` answered the caller (UNIX seconds); the run's
    # answer is then that one, whatever came after, and it is not sent again.
    answered_at: float | None = None
    # What later steps saw under `steps` (what on_error steps see of the run).
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def output_to_record(self) -> Any:
        """What the execution record keeps as the run's output (secrets scrubbed)."""
        output = self.output if self.recorded_output is SAME_AS_OUTPUT else self.recorded_output
        return scrub_value(output, self.secrets)


class Checkpoints(Protocol):
    """Where effect steps' outputs are kept for the retries of their execution."""

    async def load(self, execution_id: str) -> dict[str, Checkpoint]:
        """Every checkpoint of the execution, by step id."""
        ...

    async def save(self, execution_id: str, step_id: str, checkpoint: Checkpoint) -> bool:
        """Return once the checkpoint is durable; False if it was not kept (too large)."""
        ...


class Workflow:
    """A trigger version's workflow, compiled once and run many times."""

    def __init__(
        self,
        trigger: Trigger,
        resources: Resources | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        *,
        operator_written: bool = False,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        self.trigger = trigger
        self._operator_written = operator_written
        self.steps: list[Runnable] = []
        self.on_error: list[Runnable] = []
        self._broken: str | None = None
        try:
            self.steps = [compile_step(step) for step in trigger.workflow]
            self.on_error = [compile_step(step) for step in trigger.on_error]
        except HooklineError as exc:
            # Valid when applied, yet not here (a python step not installed on this worker):
            # every run fails with the reason instead of the delivery failing to settle.
            self._broken = f"the workflow cannot be compiled on this worker: {exc}"
        self._resources = resources
        self._output_limit = output_limit
        self._trigger_data = {"name": trigger.name, "mode": trigger.mode}
        # A workflow without effect steps never reads or writes a checkpoint.
        effects = any(getattr(step, "effects", False) for step in _every(self.steps))
        self._checkpoints = checkpoints if effects else None

    async def run(
        self,
        invocation: Invocation,
        attempt: int,
        *,
        resume: bool = False,
        answer_now: AnswerNow | None = None,
    ) -> Outcome:
        """Run the steps; a failing step or a timeout ends the run as failed, naming the step.

        `resume` (a retry, a redelivery): effect steps checkpointed by an earlier run of the
        execution are not run again; their recorded outputs stand in for them.
        `answer_now` sends a `respond` with `continue: true` to the waiting caller.
        """
        if self._broken is not None:
            return Outcome(False, error=self._broken)
        saved: dict[str, Checkpoint] = {}
        if resume and self._checkpoints is not None:
            saved = await self._checkpoints.load(invocation.id)
        context = RunContext(
            data=self._data(invocation, attempt, {}),
            workspace=invocation.workspace,
            operator_written=self._operator_written,
            resources=self._resources,
            checkpointed=saved,
            answer_now=answer_now,
        )
        return await self._timed(self.steps, context, checkpoint=True)

    async def handle_error(self, invocation: Invocation, outcome: Outcome, attempt: int, status: str) -> None:
        """Run the `on_error` steps once for a run that ended for good failed, with `error` in
        scope; their records join the run's (marked `on_error`), their failure changes nothing."""
        if not self.on_error:
            return
        failed = next((r["id"] for r in reversed(outcome.steps) if r.get("status") == "failed"), None)
        data = self._data(invocation, attempt, outcome.outputs)
        data["error"] = {"message": outcome.error, "step": failed, "status": status, "attempts": attempt}
        context = RunContext(
            data=data,
            workspace=invocation.workspace,
            operator_written=self._operator_written,  # held to the same egress policy as the run
            resources=self._resources,
        )
        handled = await self._timed(self.on_error, context, checkpoint=False)
        outcome.steps.extend({**record, "on_error": True} for record in handled.steps)

    def _data(self, invocation: Invocation, attempt: int, steps: dict[str, Any]) -> dict[str, Any]:
        return {
            "request": _to_builtins(invocation.request, builtin_types=(bytes,)),
            "trigger": {
                **self._trigger_data,
                "workspace": invocation.workspace,
                "version": invocation.version,
            },
            "execution": {"id": invocation.id, "attempt": attempt, "received_at": invocation.received_at},
            "steps": steps,
        }

    async def _timed(self, steps: list[Runnable], context: RunContext, *, checkpoint: bool) -> Outcome:
        """`steps` run under the workflow's timeout."""
        records: list[dict[str, Any]] = []
        if not any(getattr(step, "suspends", True) for step in steps):
            # Steps that never wait (map, respond, conditions of those) cannot be timed out:
            # a timeout is delivered only when the run waits. Spare the timer and its task
            # bookkeeping (steps without `suspends` are taken to wait).
            return _ended(await self._steps(steps, context, records, checkpoint), context)
        limit = self.trigger.workflow_timeout
        try:
            async with asyncio.timeout(limit):
                return _ended(await self._steps(steps, context, records, checkpoint), context)
        except TimeoutError:
            error = f"the workflow timed out after {limit:g} s (workflow_timeout)"
            running = records[-1] if records and records[-1]["status"] == "running" else None
            if running is None:
                return _ended(Outcome(False, None, None, records, error), context)
            self._finish(running, "failed", None, error)
            where = f"step {running['id']} ({running['kind']})"
            return _ended(Outcome(False, None, None, records, f"{where}: {error}"), context)

    async def _steps(
        self, steps: list[Runnable], context: RunContext, records: list[dict[str, Any]], checkpoint: bool
    ) -> Outcome:
        queue: deque[Runnable] = deque(steps)
        store = self._checkpoints if checkpoint else None
        output: Any = None
        recorded: Any = None
        while queue:
            step = queue.popleft()
            effects = getattr(step, "effects", False)  # a step that does not say has none
            done = context.checkpointed.get(step.id) if effects else None
            if done is not None:
                # Run by an earlier attempt: its output stands, the effect is not repeated.
                records.append({**done.record, "resumed": True})
                context.record_output(step.id, done.output)
                output = recorded = done.output
                continue  # effect steps neither answer nor branch
            record = {"id": step.id, "kind": step.kind, "status": "running", "started_at": time.time()}
            records.append(record)  # before it runs: a workflow timeout finds it here
            context.detail, context.recorded_output = None, SAME_AS_OUTPUT
            try:
                policy: StepRetry | None = getattr(step, "retry", None)
                with tracing.stepping(step.id, step.kind) if tracing.on else tracing.UNTRACED:
                    if policy is None:
                        output = await _run_step(step, context)
                    else:
                        output = await _run_tries(step, policy, context, record)
            except StepFailed as exc:
                error = scrub(str(exc), context.secrets)
                self._finish(
                    record, "failed", scrub_value(exc.output, context.secrets), error, context.detail
                )
                where = f"step {step.id} ({step.kind})"
                return Outcome(False, None, None, records, f"{where}: {error}", problem_type=exc.problem_type)
            recorded = output if context.recorded_output is SAME_AS_OUTPUT else context.recorded_output
            self._finish(record, "succeeded", scrub_value(recorded, context.secrets), None, context.detail)
            context.record_output(step.id, output)
            if effects and store is not None:
                # Durable before the next step runs. Kept scrubbed of the connections'
                # secrets, like the record: a resumed run sees a credential a target echoed
                # as `[redacted]`, and no secret value is ever stored.
                kept = Checkpoint(scrub_value(output, context.secrets), record)
                if not await store.save(str(context.data["execution"]["id"]), step.id, kept):
                    record["checkpointed"] = False  # a retry runs it again
            answer, send = context.answer, context.answer_now
            if answer is not None and answer.early and context.answered_at is None and send is not None:
                await send(answer)
                context.answered_at = record["answered_at"] = time.time()
            if context.ends:
                break
            if context.branch:
                queue.extendleft(reversed(context.branch))
                context.branch = ()
        answer = context.answer
        # A workflow that answers 5xx says it failed: recorded and counted failed (and retried
        # as the trigger says, when no caller was answered), answered as it decided.
        failed = answer is not None and answer.status >= SERVER_ERROR
        return Outcome(
            not failed,
            output,
            answer,
            records,
            error=f"the workflow answered {answer.status}" if failed and answer is not None else None,
            recorded_output=recorded,
            secrets=frozenset(context.secrets),
        )

    def _finish(
        self,
        record: dict[str, Any],
        status: str,
        output: Any,
        error: str | None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        record["status"] = status
        record["duration_ms"] = round((time.time() - record["started_at"]) * 1000, 3)
        record["output"] = truncated(output, self._output_limit)
        record["error"] = error
        if detail:
            record.update(detail)


def _ended(outcome: Outcome, context: RunContext) -> Outcome:
    """`outcome`, with the steps' outputs, and the answer the caller already has if a
    `continue: true` sent one."""
    outcome.outputs = context.data["steps"]
    if context.answered_at is not None:
        outcome.answer, outcome.answered_at = context.answer, context.answered_at
    return outcome


def _every(steps: Iterable[Runnable]) -> Iterator[Runnable]:
    """Every compiled step, those in condition branches too."""
    for step in steps:
        yield step
        yield from _every(getattr(step, "branches", ()))


async def _run_tries(step: Runnable, policy: StepRetry, context: RunContext, record: dict[str, Any]) -> Any:
    """The step, tried again as its `retry` says; its record counts the attempts and keeps
    why each earlier one failed (`retried`)."""
    retried: list[str] = []

    def note(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        retried.append(scrub(str(failure), context.secrets))
        record["retried"] = retried

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait_exponential(multiplier=policy.backoff, max=policy.max_backoff),
        retry=retry_if_exception(lambda exc: isinstance(exc, StepFailed) and _retried(exc, policy.on)),
        before_sleep=note,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            record["attempts"] = attempt.retry_state.attempt_number
            context.detail, context.recorded_output = None, SAME_AS_OUTPUT
            return await _run_step(step, context)
    raise AssertionError("unreachable")  # reraise=True: the last failure propagates


def _retried(failure: StepFailed, on: Sequence[int | str]) -> bool:
    """Whether `retry.on` lists this failure (its answer's status or class, or its cause)."""
    if failure.cause is not None:
        return failure.cause in on
    return failure.status is not None and status_listed(failure.status, on)


async def _run_step(step: Runnable, context: RunContext) -> Any:
    """One step under its own timeout; every failure becomes StepFailed, naming what went wrong."""
    timeout = asyncio.timeout(step.timeout) if step.timeout is not None else None
    try:
        if timeout is None:
            return await step.run(context)
        async with timeout:
            return await step.run(context)
    except TimeoutError:
        # The workflow's own timeout arrives here as a cancellation, never as TimeoutError.
        if timeout is not None and timeout.expired():
            raise StepFailed(f"timed out after {step.timeout:g} s (timeout)", cause="timeout") from None
        raise StepFailed("timed out", cause="timeout") from None
    except StepFailed:
        raise
    except HooklineError as exc:
        raise StepFailed(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - logged below, frames only
        # The frames without the message: a plugin's message may quote the data it was given.
        frames = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
        log.error(
            "step %s (%s) raised %s\nTraceback (most recent call last):\n%s",
            step.id,
            step.kind,
            type(exc).__name__,
            frames,
        )
        raise StepFailed(f"internal error: {type(exc).__name__}") from None


def truncated(output: Any, limit: int) -> Any:
    """`output`, or when its JSON is longer than `limit` bytes a marked preview of it."""
    if output is None:
        return None
    encoded = _json.encode(output)
    if len(encoded) <= limit:
        return output
    return {
        "truncated": True,
        "size_bytes": len(encoded),
        "preview": encoded[:limit].decode("utf-8", errors="ignore"),
    }
