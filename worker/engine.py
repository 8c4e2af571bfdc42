"""Run a trigger's workflow: steps in order, each output recorded, until the end or `respond`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from shared.errors import HooklineError
from shared.messages import Invocation
from shared.spec.model import Trigger
from worker.steps import compile_step
from worker.steps.base import Answer, RunContext, Runnable

_to_builtins = msgspec.to_builtins
log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How a run ended: its output, the answer if one was decided, every step's record."""

    ok: bool
    output: Any = None
    answer: Answer | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


class Workflow:
    """A trigger version's workflow, compiled once and run many times."""

    def __init__(self, trigger: Trigger) -> None:
        self.trigger = trigger
        self.steps: list[Runnable] = [compile_step(step) for step in trigger.workflow]
        self._trigger_data = {"name": trigger.name, "mode": trigger.mode}

    async def run(self, invocation: Invocation, attempt: int) -> Outcome:
        """Run every step; a step error ends the run as failed, naming the step."""
        context = RunContext(
            data={
                "request": _to_builtins(invocation.request, builtin_types=(bytes,)),
                "trigger": {
                    **self._trigger_data,
                    "workspace": invocation.workspace,
                    "version": invocation.version,
                },
                "execution": {
                    "id": invocation.id,
                    "attempt": attempt,
                    "received_at": invocation.received_at,
                },
                "steps": {},
            }
        )
        records: list[dict[str, Any]] = []
        output: Any = None
        for step in self.steps:
            started = time.time()
            error: str | None = None
            try:
                output = await step.run(context)
            except HooklineError as exc:
                error = str(exc)
            except Exception as exc:
                log.exception("step %s raised", step.id, extra={"execution_id": invocation.id})
                error = f"internal error: {type(exc).__name__}: {exc}"
            if error is not None:
                records.append(_record(step, started, "failed", None, error))
                return Outcome(False, None, None, records, f"step {step.id} ({step.kind}): {error}")
            context.record_output(step.id, output)
            records.append(_record(step, started, "succeeded", output, None))
            if context.answer is not None:
                break
        return Outcome(True, output, context.answer, records)


def _record(step: Runnable, started: float, status: str, output: Any, error: str | None) -> dict[str, Any]:
    return {
        "id": step.id,
        "kind": step.kind,
        "status": status,
        "started_at": started,
        "duration_ms": round((time.time() - started) * 1000, 3),
        "output": output,
        "error": error,
    }
