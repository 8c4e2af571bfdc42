"""Per-step retries inside a run, and `on_error` steps, in the engine (a local HTTP recorder)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from shared.errors import SpecError
from shared.spec.loader import load_text
from tests.integration.target import Target, running_target
from tests.workflow_runs import StaticResources, document, invocation, workflow_of
from worker.engine import Workflow


@pytest.fixture
def target() -> Iterator[Target]:
    with running_target() as running:
        yield running


@pytest.fixture
async def resources() -> AsyncIterator[StaticResources]:
    async with httpx.AsyncClient() as client:
        yield StaticResources(client)


async def test_a_step_retry_tries_a_flaky_call_again_inside_the_run_with_the_same_key(
    target: Target, resources: StaticResources
) -> None:
    workflow = workflow_of(
        f"""
        - id: a
          http: {{method: POST, url: "{target.url("/a")}"}}
        - id: b
          http: {{method: POST, url: "{target.url("/b")}"}}
          retry: {{max_attempts: 3, backoff: 10ms, on: [5xx]}}
        """,
        resources,
    )
    target.fail_times["/b"] = 2
    call = invocation()
    outcome = await workflow.run(call, 1)
    assert outcome.ok, outcome.error
    assert [(p.path, p.idempotency_key) for p in target.posts] == [
        ("/a", f"{call.id}:a"),
        ("/b", f"{call.id}:b"),
        ("/b", f"{call.id}:b"),
        ("/b", f"{call.id}:b"),
    ]
    assert [(r["id"], r["status"], r.get("attempts")) for r in outcome.steps] == [
        ("a", "succeeded", None),
        ("b", "succeeded", 3),
    ]
    assert outcome.steps[1]["output"]["body"] == {"path": "/b", "call": 3}
    assert outcome.steps[1]["retried"] == [f"POST {target.url('/b')} answered 500; expected 2xx"] * 2


@pytest.mark.parametrize(
    ("on", "attempts"),
    [("[503]", 1), ("[4xx, timeout, connection]", 1), ("[500]", 2), ("[5xx]", 2)],
)
async def test_a_step_retry_tries_again_only_what_on_lists(
    target: Target, resources: StaticResources, on: str, attempts: int
) -> None:
    workflow = workflow_of(
        f"""
        - id: b
          http: {{method: POST, url: "{target.url("/b")}"}}
          retry: {{max_attempts: 2, backoff: 10ms, on: {on}}}
        """,
        resources,
    )
    target.fail_times["/b"] = 5  # answers 500
    outcome = await workflow.run(invocation(), 1)
    assert (outcome.ok, outcome.steps[0]["attempts"]) == (False, attempts)
    assert len(target.posts_to("/b")) == attempts


async def test_a_step_retry_tries_again_after_a_timeout_and_a_refused_connection(
    target: Target, resources: StaticResources
) -> None:
    workflow = workflow_of(
        f"""
        - id: slow
          http: {{url: "{target.url("/work/300")}", timeout: 50ms}}
          retry: {{max_attempts: 2, backoff: 10ms, on: [timeout]}}
        """,
        resources,
    )
    outcome = await workflow.run(invocation(), 1)
    assert (outcome.ok, outcome.error, outcome.steps[0]["attempts"]) == (
        False,
        "step slow (http): timed out after 0.05 s (timeout)",
        2,
    )
    refused = workflow_of(
        """
        - id: gone
          http: {url: "http://127.0.0.1:9/x"}
          retry: {max_attempts: 3, backoff: 10ms, on: [connection]}
        """,
        resources,
    )
    outcome = await refused.run(invocation(), 1)
    assert (outcome.ok, outcome.steps[0]["attempts"]) == (False, 3)


async def test_on_error_steps_run_with_the_error_in_scope_and_join_the_record(
    target: Target, resources: StaticResources
) -> None:
    [workspace] = load_text(
        document(
            f"""
            - id: a
              http: {{method: POST, url: "{target.url("/a")}"}}
            - id: b
              http: {{method: POST, url: "{target.url("/b")}"}}
            """,
            trigger=f"""
            on_error:
              - id: alert
                http:
                  method: POST
                  url: "{target.url("/alert")}"
                  json: {{error: "{{{{ error }}}}", a: "{{{{ steps.a.output.status }}}}"}}
            """,
        )
    )
    workflow = Workflow(workspace.triggers[0], resources)
    target.fail_times["/b"] = 1
    call = invocation()
    outcome = await workflow.run(call, 1)
    assert not outcome.ok
    await workflow.handle_error(call, outcome, 2, "dead")
    [alert] = target.posts_to("/alert")
    assert alert.idempotency_key == f"{call.id}:alert"
    assert json.loads(alert.body) == {
        "error": {
            "message": f"step b (http): POST {target.url('/b')} answered 500; expected 2xx",
            "step": "b",
            "status": "dead",
            "attempts": 2,
        },
        "a": 201,
    }
    assert [(r["id"], r["status"], r.get("on_error", False)) for r in outcome.steps] == [
        ("a", "succeeded", False),
        ("b", "failed", False),
        ("alert", "succeeded", True),
    ]


@pytest.mark.parametrize(
    ("trigger", "workflow", "error"),
    [
        (
            "",
            "- {id: shape, map: 1, retry: {max_attempts: 2}}",
            "<input>: trigger t, step shape, field retry: only http, sql and python steps can be retried",
        ),
        (
            "on_error: [{id: answer, respond: {status: 200}}]",
            "- {id: shape, map: 1}",
            "<input>: trigger t, on_error, step answer: on_error steps cannot answer the caller",
        ),
        (
            "on_error: [{id: shape, map: 2}]",
            "- {id: shape, map: 1}",
            "<input>: trigger t: duplicate step id 'shape'",
        ),
        (
            "",
            "- {id: call, http: {url: 'http://x'}, retry: {on: ['503']}}",
            "<input>: trigger t, step call, field retry.on[0]: Invalid enum value '503'",
        ),
        (
            "",
            "- {id: call, http: {url: 'http://x'}, retry: {on: []}}",
            "<input>: trigger t, step call, field retry: `on` must list at least one failure to retry",
        ),
    ],
)
def test_step_retries_and_on_error_are_checked_when_applied(trigger: str, workflow: str, error: str) -> None:
    with pytest.raises(SpecError) as raised:
        load_text(document(workflow, trigger=trigger))
    assert str(raised.value) == error


def test_on_error_steps_may_read_the_error_and_any_workflow_step() -> None:
    [workspace] = load_text(
        document(
            "- {id: shape, map: 1}",
            trigger="on_error: [{id: note, map: {why: '{{ error.message }}', had: '{{ steps.shape.output }}'}}]",
        )
    )
    assert [step.id for step in workspace.triggers[0].on_error] == ["note"]
