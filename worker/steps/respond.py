"""`respond`: decide the status, headers and body of a request-response answer; ends the run."""

from __future__ import annotations

from typing import Any

from shared.errors import WorkflowError
from shared.expressions import compile_template, render
from shared.spec.steps import RespondStep
from worker.steps.base import Answer, RunContext


class RespondRunner:
    """Renders the answer and hands it to the run."""

    kind = "respond"
    timeout: float | None = None
    suspends = False

    def __init__(self, step: RespondStep) -> None:
        self.id = step.id
        self._status = compile_template(step.respond.status)
        self._headers = compile_template(step.respond.headers)
        self._body = compile_template(step.respond.body)

    async def run(self, context: RunContext) -> Any:
        status = render(self._status, context.data)
        try:
            code = int(status)
        except (TypeError, ValueError):
            raise WorkflowError(f"status {status!r} is not an HTTP status code") from None
        if not 100 <= code <= 599:
            raise WorkflowError(f"status {code} is not an HTTP status code")
        headers = {str(k): str(v) for k, v in render(self._headers, context.data).items()}
        context.answer = Answer(code, headers, render(self._body, context.data))
        return {"status": code, "headers": headers, "body": context.answer.body}
