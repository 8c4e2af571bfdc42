"""`condition`: evaluate `if`; the chosen branch's steps run next, recorded like any other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.errors import WorkflowError
from shared.expressions import Expr, compile_template
from shared.spec.steps import ConditionStep, Step
from worker.steps.base import RunContext, Runnable


class ConditionRunner:
    """Chooses `then` or `else` by JMESPath truth: false, null, "", [] and {} are false."""

    kind = "condition"
    timeout: float | None = None
    effects = False  # itself; its branches' steps say for themselves

    def __init__(self, step: ConditionStep, compile_step: Callable[[Step], Runnable]) -> None:
        self.id = step.id
        test = compile_template(step.condition.if_.strip())
        if not isinstance(test, Expr):
            raise WorkflowError("`if` must be one {{ expression }}")
        self._test = test
        self._then = [compile_step(s) for s in step.condition.then]
        self._else = [compile_step(s) for s in step.condition.else_]
        self.branches = (*self._then, *self._else)
        self.suspends = any(s.suspends for s in (*self._then, *self._else))

    async def run(self, context: RunContext) -> Any:
        value = self._test.evaluate(context.data)
        # Not `value not in (None, False, ...)`: 0 == False in Python, yet 0 is true in JMESPath.
        chosen = not (value is None or value is False or value in ("", [], {}))
        context.branch = self._then if chosen else self._else
        return {"if": chosen, "branch": "then" if chosen else "else"}
