"""What a workflow answers is checked: at apply where written out, when rendered otherwise.

Findings #12 and #6 (Set-Cookie) of the security review: a 1xx written as a final answer,
a body with 204/304, a CR, LF, NUL or non-latin-1 character in a header, and headers that
belong to the connection or the origin (`Connection`, `Set-Cookie`).
"""

from __future__ import annotations

import msgspec
import pytest

from shared.db.registry import spec_from_json
from shared.errors import SpecError
from shared.spec.loader import load_text
from tests.workflow_runs import document, invocation, workflow_of
from worker.engine import Workflow
from worker.execution import reply_for


def _refused(workflow: str, trigger: str = "") -> str:
    with pytest.raises(SpecError) as raised:
        load_text(document(workflow, trigger=trigger), source="f.yaml")
    return str(raised.value)


@pytest.mark.parametrize("status", [100, 101, 199, "103"])
def test_a_respond_step_with_an_informational_status_is_refused_at_apply(status: object) -> None:
    assert _refused(f"- respond: {{status: {status!r}}}") == (
        "f.yaml: trigger t, step respond_1, field respond.status: "
        f"{status!r} is not a final HTTP status code (an integer from 200 to 599)"
    )


@pytest.mark.parametrize("status", [204, 304])
def test_a_respond_step_with_a_body_on_a_no_content_status_is_refused_at_apply(status: int) -> None:
    assert _refused(f"- respond: {{status: {status}, body: {{a: 1}}}}") == (
        f"f.yaml: trigger t, step respond_1, field respond.body: a {status} answer has no body"
    )


_UNSENDABLE = "the value holds a character an HTTP header cannot carry (CR, LF, NUL or another control, or one outside latin-1)"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        pytest.param("X-A", '"a\\r\\nSet-Cookie: s=1"', f"header X-A: {_UNSENDABLE}", id="crlf"),
        pytest.param("X-A", '"a\\0b"', f"header X-A: {_UNSENDABLE}", id="nul"),
        pytest.param("X-A", '"\\u2603"', f"header X-A: {_UNSENDABLE}", id="snowman"),
        pytest.param("Set-Cookie", '"s=1"', "header Set-Cookie cannot be set by a workflow", id="set-cookie"),
        pytest.param("connection", "close", "header connection cannot be set by a workflow", id="connection"),
        pytest.param(
            "Keep-Alive", "timeout=5", "header Keep-Alive cannot be set by a workflow", id="keep-alive"
        ),
        pytest.param(
            "Transfer-Encoding", "chunked", "header Transfer-Encoding cannot be set by a workflow", id="te"
        ),
        pytest.param(
            "Content-Length", '"1"', "header Content-Length cannot be set by a workflow", id="length"
        ),
        pytest.param('"X A"', '"1"', "header name 'X A' is not a valid HTTP header name", id="space-in-name"),
    ],
)
def test_a_respond_step_with_an_unsafe_header_is_refused_at_apply(name: str, value: str, reason: str) -> None:
    assert _refused(f"- respond: {{status: 200, headers: {{{name}: {value}}}}}") == (
        f"f.yaml: trigger t, step respond_1, field respond.headers.{name.strip(chr(34))}: {reason}"
    )


def test_an_async_response_with_set_cookie_or_a_body_on_204_is_refused_at_apply() -> None:
    assert _refused("- {id: ok, map: 1}", 'response: {headers: {Set-Cookie: "s=1"}}') == (
        "f.yaml: trigger t, field response.headers.Set-Cookie: header Set-Cookie cannot be set by a workflow"
    )
    assert _refused("- {id: ok, map: 1}", "response: {status: 204, body: {id: 1}}") == (
        "f.yaml: trigger t, field response.body: a 204 answer has no body"
    )


def test_computed_answers_and_safe_literal_ones_load() -> None:
    [workspace] = load_text(
        document(
            '- respond: {status: "{{ request.body.s }}", headers: {X-A: "{{ request.body.h }}", '
            'X-B: "caf\\u00e9 ok"}, body: "{{ request.body.b }}"}'
        )
    )
    assert workspace.triggers[0].workflow


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(
            {"s": 100},
            "step respond_1 (respond): status 100 cannot answer a call (an integer from 200 to 599)",
            id="status-100",
        ),
        pytest.param(
            {"s": 101},
            "step respond_1 (respond): status 101 cannot answer a call (an integer from 200 to 599)",
            id="status-101",
        ),
        pytest.param(
            {"s": 204, "b": "text"}, "step respond_1 (respond): a 204 answer has no body", id="204-with-body"
        ),
        pytest.param(
            {"s": 200, "h": "a\r\nSet-Cookie: s=1"},
            "step respond_1 (respond): header X-A: the value holds a character an HTTP header cannot carry "
            "(CR, LF, NUL or another control, or one outside latin-1)",
            id="crlf",
        ),
        pytest.param(
            {"s": 200, "h": "a\0b"},
            "step respond_1 (respond): header X-A: the value holds a character an HTTP header cannot carry "
            "(CR, LF, NUL or another control, or one outside latin-1)",
            id="nul",
        ),
        pytest.param(
            {"s": 200, "h": "\u2603"},
            "step respond_1 (respond): header X-A: the value holds a character an HTTP header cannot carry "
            "(CR, LF, NUL or another control, or one outside latin-1)",
            id="snowman",
        ),
    ],
)
async def test_a_computed_answer_that_cannot_be_sent_fails_the_step_and_answers_502(
    body: dict[str, object], error: str
) -> None:
    workflow = workflow_of(
        '- respond: {status: "{{ request.body.s }}", headers: {X-A: "{{ request.body.h }}"}, '
        'body: "{{ request.body.b }}"}'
    )
    call = invocation({"h": "fine", **body})
    outcome = await workflow.run(call, 1)
    assert (outcome.ok, outcome.answer, outcome.error) == (False, None, error)
    assert [(r["id"], r["status"]) for r in outcome.steps] == [("respond_1", "failed")]
    reply = reply_for(call, outcome)
    assert reply is not None
    assert (
        reply.status,
        reply.headers,
        reply.media_type,
        msgspec.json.decode(reply.content),
        reply.failed,
    ) == (
        502,
        {},
        "application/problem+json",
        {
            "type": "/problems/answer-invalid",
            "title": "The workflow's answer cannot be sent",
            "status": 502,
            "detail": error,
            "execution_id": call.id,
        },
        True,
    )


@pytest.mark.parametrize(
    ("respond", "error"),
    [
        pytest.param(
            {"status": 101},
            "step answer (respond): status 101 cannot answer a call (an integer from 200 to 599)",
            id="status-101",
        ),
        pytest.param(
            {"status": 200, "headers": {"Set-Cookie": "hookline_console=x; Path=/console"}},
            "step answer (respond): header Set-Cookie cannot be set by a workflow",
            id="set-cookie",
        ),
        pytest.param(
            {"status": 200, "headers": {"Connection": "upgrade"}},
            "step answer (respond): header Connection cannot be set by a workflow",
            id="connection",
        ),
    ],
)
async def test_a_trigger_stored_before_the_checks_still_cannot_send_an_unsafe_answer(
    respond: dict[str, object], error: str
) -> None:
    # As the worker reads a stored trigger: decoded, not checked again.
    trigger = spec_from_json(
        {
            "name": "t",
            "auth": {"type": "none"},
            "mode": "request_response",
            "workflow": [{"kind": "respond", "id": "answer", "respond": respond}],
        }
    )
    call = invocation({})
    outcome = await Workflow(trigger).run(call, 1)
    assert (outcome.ok, outcome.error, outcome.problem_type) == (False, error, "answer-invalid")
    reply = reply_for(call, outcome)
    assert reply is not None
    assert reply.status == 502
