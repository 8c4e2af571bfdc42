"""`respond`: decide the status, headers and body of a request-response answer; ends the run.

With `continue: true` the answer goes out at once (the engine sends it) and the run goes on.
A run answers once: a respond after that is recorded (`sent: false`) and changes nothing.

The answer is checked before it is taken (shared/spec/answers.py): one the ingress could not
send, or should not (a 1xx, a CR in a header, `Set-Cookie`), fails the step, so the run is
recorded failed and the caller gets a 502 problem instead of a dropped connection.
"""

from __future__ import annotations

from typing import Any

from shared.expressions import compile_template, render
from shared.spec.answers import answer_problem
from shared.spec.steps import RespondStep
from worker.steps.base import Answer, AnswerInvalid, RunContext


class RespondRunner:
    """Renders the answer, checks it and hands it to the run."""

    kind = "respond"
    timeout: float | None = None
    effects = False
    suspends = False

    def __init__(self, step: RespondStep) -> None:
        self.id = step.id
        self._status = compile_template(step.respond.status)
        self._headers = compile_template(step.respond.headers)
        self._body = compile_template(step.respond.body)
        self._continue = step.respond.continue_

    async def run(self, context: RunContext) -> Any:
        status = render(self._status, context.data)
        try:
            code = int(status)
        except (TypeError, ValueError):
            raise AnswerInvalid(f"status {status!r} is not an HTTP status code") from None
        headers = {str(k): str(v) for k, v in render(self._headers, context.data).items()}
        body = render(self._body, context.data)
        problem = answer_problem(code, headers, body)
        if problem is not None:
            raise AnswerInvalid(problem)
        output = {"status": code, "headers": headers, "body": body}
        context.ends = not self._continue
        if context.answer is not None:
            return {**output, "sent": False}  # answered already, by a `continue: true`
        context.answer = Answer(code, headers, body, early=self._continue)
        return output
