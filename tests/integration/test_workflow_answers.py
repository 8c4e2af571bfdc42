"""A workflow's answer that cannot be sent: the run is recorded failed, the caller gets a 502.

Security review #12: `s=100` was written as a final `100 Continue` with a body, a 204 with
a body was a 500, and a CRLF in a header value dropped the connection while the run was
recorded as succeeded.
"""

from __future__ import annotations

import httpx
import pytest

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.stack import Services

ANSWERS = """
workspace: {ws}
triggers:
  - name: echo
    auth: {{type: none}}
    mode: request_response
    timeout: 10s
    workflow:
      - respond:
          status: "{{{{ request.body.s }}}}"
          headers: {{X-Echo: "{{{{ request.body.h }}}}"}}
          body: "{{{{ request.body.b }}}}"
  - name: accept
    auth: {{type: none}}
    response: {{status: 202, headers: {{X-Ref: "{{{{ request.body.ref }}}}"}}}}
    workflow: [{{id: ok, map: {{ok: true}}}}]
"""


@pytest.fixture
async def answers(db: Connection, workspace: str, stack: Services) -> str:
    await apply_yaml(db, ANSWERS.format(ws=workspace))
    base = f"{stack.base_url}/hooks/{workspace}"

    async def ready() -> bool | None:
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{base}/echo", json={"s": 200, "h": "x", "b": "ok"})
        return True if answer.status_code == 200 else None

    await eventually(ready, timeout=20)
    return base


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param(
            {"s": 100, "h": "x", "b": "hi"},
            "step respond_1 (respond): status 100 cannot answer a call (an integer from 200 to 599)",
            id="status-100",
        ),
        pytest.param(
            {"s": 204, "h": "x", "b": "a body"},
            "step respond_1 (respond): a 204 answer has no body",
            id="204-with-a-body",
        ),
        pytest.param(
            {"s": 200, "h": "a\r\nSet-Cookie: stolen=1", "b": "hi"},
            "step respond_1 (respond): header X-Echo: the value holds a character an HTTP header cannot "
            "carry (CR, LF, NUL or another control, or one outside latin-1)",
            id="crlf-in-a-header",
        ),
        pytest.param(
            {"s": 200, "h": "\u2603", "b": "hi"},
            "step respond_1 (respond): header X-Echo: the value holds a character an HTTP header cannot "
            "carry (CR, LF, NUL or another control, or one outside latin-1)",
            id="snowman-in-a-header",
        ),
    ],
)
async def test_a_computed_answer_that_cannot_be_sent_fails_the_run_and_the_caller_gets_502(
    answers: str, db: Connection, body: dict[str, object], detail: str
) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{answers}/echo", json=body)
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    assert "set-cookie" not in answer.headers
    execution_id = answer.json()["execution_id"]
    assert answer.json() == {
        "type": "/problems/answer-invalid",
        "title": "The workflow's answer cannot be sent",
        "status": 502,
        "detail": detail,
        "execution_id": execution_id,
    }
    execution = await finished_execution(db, execution_id)
    assert (execution.status, execution.error) == ("failed", detail)


async def test_an_async_response_header_with_crlf_from_the_request_answers_502(answers: str) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{answers}/accept", json={"ref": "a\r\nSet-Cookie: stolen=1"})
    assert answer.status_code == 502
    assert "set-cookie" not in answer.headers
    problem = answer.json()
    execution_id = problem["execution_id"]
    assert problem == {
        "type": "/problems/answer-invalid",
        "title": "The trigger's answer cannot be sent",
        "status": 502,
        "detail": "the trigger's response cannot be sent: header X-Ref: the value holds a character an HTTP "
        "header cannot carry (CR, LF, NUL or another control, or one outside latin-1)",
        "execution_id": execution_id,
        "status_url": f"/hooks/{answers.split('/hooks/')[1]}/accept/executions/{execution_id}",
    }
