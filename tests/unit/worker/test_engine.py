"""The engine: step order, conditions, respond, failures, timeouts and what each record keeps."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, cast

import asyncpg
import msgspec
import pytest

from shared.broker.publishers import ReplyPublisher
from shared.logs import RunContextFilter, run_context
from shared.settings import load_settings
from shared.spec.model import Trigger
from shared.wire.messages import Reply
from tests.workflow_runs import Recorded, invocation, workflow_of
from worker.engine import Workflow, truncated
from worker.execution import Finished, Reporter, reply_for
from worker.recorder import Recorder
from worker.steps.base import RunContext, scrub

BASE_SETTINGS = {"HOOKLINE_DATABASE_URL": "postgresql://db/x", "HOOKLINE_AMQP_URL": "amqp://mq/"}


async def test_steps_run_in_order_and_see_earlier_outputs() -> None:
    workflow = workflow_of(
        """
        - id: a
          map: {n: "{{ request.body.n }}"}
        - id: b
          map: "{{ concat('n=', steps.a.output.n) }}"
        """
    )
    outcome = await workflow.run(invocation({"n": 7}), 1)
    assert (outcome.ok, outcome.output, outcome.answer) == (True, "n=7", None)
    assert [(r["id"], r["kind"], r["status"], r["output"], r["error"]) for r in outcome.steps] == [
        ("a", "map", "succeeded", {"n": 7}, None),
        ("b", "map", "succeeded", "n=7", None),
    ]
    assert all(r["duration_ms"] >= 0 and r["started_at"] > 0 for r in outcome.steps)


BRANCHES = """
- id: check
  condition:
    if: "{{ request.body.value }}"
    then:
      - id: agree
        map: then
    else:
      - id: refuse
        map: else
      - id: answer
        respond: {status: 409, headers: {X-Why: "no"}, body: {value: "{{ request.body.value }}"}}
- id: after
  map: "{{ steps.agree.output }}"
"""


async def test_a_condition_runs_the_then_branch_and_then_the_rest() -> None:
    outcome = await workflow_of(BRANCHES).run(invocation({"value": "x"}), 1)
    assert outcome.ok
    assert [(r["id"], r["output"]) for r in outcome.steps] == [
        ("check", {"if": True, "branch": "then"}),
        ("agree", "then"),
        ("after", "then"),
    ]


async def test_a_respond_inside_a_branch_ends_the_run() -> None:
    outcome = await workflow_of(BRANCHES).run(invocation({"value": []}), 1)
    assert [r["id"] for r in outcome.steps] == ["check", "refuse", "answer"]
    assert outcome.answer is not None
    assert (outcome.answer.status, outcome.answer.headers, outcome.answer.body) == (
        409,
        {"X-Why": "no"},
        {"value": []},
    )


@pytest.mark.parametrize(
    ("value", "chosen"),
    [
        (0, True),
        ("0", True),
        ("false", True),
        (False, False),
        (None, False),
        ("", False),
        ([], False),
        ({}, False),
    ],
)
async def test_the_condition_uses_jmespath_truth(value: Any, chosen: bool) -> None:
    outcome = await workflow_of(BRANCHES).run(invocation({"value": value}), 1)
    assert outcome.steps[0]["output"]["if"] is chosen


async def test_a_failing_step_ends_the_run_naming_the_step_and_the_expression() -> None:
    workflow = workflow_of(
        """
        - id: ok
          map: 1
        - id: bad
          map: "{{ abs(request.body.x) }}"
        - id: never
          map: 2
        """
    )
    outcome = await workflow.run(invocation({"x": "a"}), 1)
    reason = (
        "expression {{ abs(request.body.x) }}: In function abs(), invalid type for value: a, "
        "expected one of: ['number'], received: \"string\""
    )
    assert (outcome.ok, outcome.error) == (False, f"step bad (map): {reason}")
    assert [(r["id"], r["status"], r["error"]) for r in outcome.steps] == [
        ("ok", "succeeded", None),
        ("bad", "failed", reason),
    ]


class Nap:
    """A step that sleeps, to test timeouts without a slow server."""

    kind = "nap"
    suspends = True

    def __init__(self, step_id: str, seconds: float, timeout: float | None = None) -> None:
        self.id, self.seconds, self.timeout = step_id, seconds, timeout

    async def run(self, context: RunContext) -> Any:
        await asyncio.sleep(self.seconds)
        return "rested"


async def test_a_step_timeout_fails_that_step() -> None:
    workflow = workflow_of("- id: x\n  map: 1")
    workflow.steps = [Nap("quick", 0), Nap("slow", 5, timeout=0.2)]
    outcome = await workflow.run(invocation(), 1)
    assert outcome.error == "step slow (nap): timed out after 0.2 s (timeout)"
    assert [(r["id"], r["status"]) for r in outcome.steps] == [("quick", "succeeded"), ("slow", "failed")]


async def test_the_workflow_timeout_ends_the_run_in_the_step_that_was_running() -> None:
    workflow = workflow_of("- id: x\n  map: 1", trigger="workflow_timeout: 300ms")
    workflow.steps = [Nap("first", 0.1, timeout=10), Nap("second", 5, timeout=10), Nap("third", 0)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await workflow.run(invocation(), 1)
    assert loop.time() - started < 1
    error = "the workflow timed out after 0.3 s (workflow_timeout)"
    assert outcome.error == f"step second (nap): {error}"
    assert [(r["id"], r["status"], r["error"]) for r in outcome.steps] == [
        ("first", "succeeded", None),
        ("second", "failed", error),
    ]


class Leaky:
    """A step with a bug whose message quotes the data it was given."""

    kind = "leaky"
    id = "leaky"
    timeout: float | None = None
    suspends = True

    async def run(self, context: RunContext) -> Any:
        raise ValueError(f"cannot parse {context.data['request']['body']['card']}")


async def test_a_bug_in_a_step_is_an_internal_error_logged_with_its_frames_but_not_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workflow = workflow_of("- id: x\n  map: 1")
    workflow.steps = [Leaky()]
    run = invocation({"card": "4111-1111-1111-1111"})
    caplog.handler.addFilter(RunContextFilter())
    with caplog.at_level(logging.ERROR, logger="worker.engine"), run_context(execution_id=run.id):
        outcome = await workflow.run(run, 1)
    assert outcome.error == "step leaky (leaky): internal error: ValueError"
    [entry] = caplog.records
    assert entry.exc_info is None  # a formatter would print the message from it
    message = entry.getMessage()
    first, traceback_line, *frames = message.splitlines()
    assert (first, traceback_line) == (
        "step leaky (leaky) raised ValueError",
        "Traceback (most recent call last):",
    )
    assert frames[-2:] == [
        f'  File "{__file__}", line {Leaky.run.__code__.co_firstlineno + 1}, in run',
        """    raise ValueError(f"cannot parse {context.data['request']['body']['card']}")""",
    ]
    assert "4111" not in message
    assert entry.__dict__["execution_id"] == run.id  # logged within the run's context


async def test_a_large_output_is_truncated_in_the_record_but_whole_for_later_steps() -> None:
    workflow = workflow_of(
        """
        - id: big
          map: "{{ request.body }}"
        - id: size
          map: "{{ length(steps.big.output.text) }}"
        """,
        output_limit=100,
    )
    text = "é" * 200  # 400 bytes of UTF-8: the cut must not split a character
    outcome = await workflow.run(invocation({"text": text}), 1)
    big, size = outcome.steps
    encoded = msgspec.json.encode({"text": text})
    assert big["output"] == {
        "truncated": True,
        "size_bytes": len(encoded),
        "preview": encoded[:100].decode("utf-8", errors="ignore"),
    }
    assert len(big["output"]["preview"].encode()) <= 100
    assert size["output"] == 200


class Masked:
    """A step whose record keeps a scrubbed copy of its output, as the http step's does."""

    kind = "masked"
    id = "masked"
    timeout: float | None = None
    suspends = False

    async def run(self, context: RunContext) -> Any:
        context.recorded_output = {"token": "[redacted]"}
        return {"token": "t-real"}


async def test_a_steps_recorded_output_goes_to_its_record_and_its_output_to_later_steps() -> None:
    workflow = workflow_of('- id: masked\n  map: 1\n- id: read\n  map: "{{ steps.masked.output.token }}"')
    workflow.steps = [Masked(), workflow.steps[1]]
    outcome = await workflow.run(invocation(), 1)
    assert (outcome.ok, outcome.output) == (True, "t-real")
    assert [(r["id"], r["output"]) for r in outcome.steps] == [
        ("masked", {"token": "[redacted]"}),
        ("read", "t-real"),
    ]


def test_an_output_within_the_limit_is_kept_as_it_is() -> None:
    assert truncated({"a": 1}, 7) == {"a": 1}
    assert truncated({"a": 1}, 6)["truncated"] is True
    assert truncated(None, 0) is None


async def test_a_workflow_that_cannot_compile_on_this_worker_fails_each_run() -> None:
    # Valid when applied elsewhere, but this worker lacks the python step.
    spec = {
        "name": "t",
        "auth": {"type": "none"},
        "workflow": [{"kind": "python", "id": "p", "python": {"step": "not-installed"}}],
    }
    workflow = Workflow(msgspec.convert(spec, Trigger))
    outcome = await workflow.run(invocation(), 1)
    assert (outcome.ok, outcome.steps) == (False, [])
    assert outcome.error == (
        "the workflow cannot be compiled on this worker: unknown python step 'not-installed'; installed: csv"
    )


def test_secrets_are_scrubbed_from_messages() -> None:
    assert scrub("cannot log in as admin with s3cr3t-value", ["s3cr3t-value", "x"]) == (
        "cannot log in as admin with [redacted]"
    )


async def test_the_runs_output_is_truncated_in_the_record_and_its_answer_kept_whole() -> None:
    workflow = workflow_of('- id: big\n  map: "{{ request.body }}"', output_limit=100)
    run = invocation({"text": "é" * 200})
    outcome = await workflow.run(run, 1)
    recorded = Recorded()
    reporter = Reporter(
        cast(Recorder, recorded), cast(ReplyPublisher, None), cast(asyncpg.Pool, None), output_limit=100
    )
    await reporter.record(run, Finished(outcome, 1, 1.0, 2.0), "succeeded", reply_for(run, outcome))
    [record] = recorded.records
    encoded = msgspec.json.encode({"text": "é" * 200})
    assert record.output == {
        "truncated": True,
        "size_bytes": len(encoded),
        "preview": encoded[:100].decode("utf-8", errors="ignore"),
    }
    # Whole: a call repeating the idempotency key is answered from it, as the first was.
    assert record.response == Reply(
        execution_id=run.id,
        status=200,
        content=msgspec.json.encode({"text": "é" * 200}),
        media_type="application/json",
    )
    assert outcome.output == {"text": "é" * 200}


async def test_a_small_run_output_and_answer_are_recorded_whole() -> None:
    run = invocation({"n": 1})
    outcome = await workflow_of('- id: n\n  map: "{{ request.body }}"').run(run, 1)
    recorded = Recorded()
    reporter = Reporter(cast(Recorder, recorded), cast(ReplyPublisher, None), cast(asyncpg.Pool, None))
    await reporter.record(run, Finished(outcome, 1, 1.0, 2.0), "succeeded", reply_for(run, outcome))
    [record] = recorded.records
    assert (record.output, record.response) == (
        {"n": 1},
        Reply(execution_id=run.id, status=200, content=b'{"n":1}', media_type="application/json"),
    )


@pytest.mark.parametrize("status", [500, 503])
async def test_a_respond_with_a_5xx_is_a_failed_run_answered_as_the_workflow_decided(status: int) -> None:
    workflow = workflow_of(f'- respond: {{status: {status}, body: {{retry: "later"}}}}')
    call = invocation()
    outcome = await workflow.run(call, 1)
    assert (outcome.ok, outcome.error) == (False, f"the workflow answered {status}")
    reply = reply_for(call, outcome)
    assert reply is not None
    assert (reply.status, reply.content, reply.media_type, reply.failed) == (
        status,
        b'{"retry":"later"}',
        "application/json",
        True,
    )


async def test_a_respond_below_500_is_a_succeeded_run() -> None:
    outcome = await workflow_of("- respond: {status: 422}").run(invocation(), 1)
    assert (outcome.ok, outcome.error, outcome.answer is not None) == (True, None, True)


async def test_a_respond_with_continue_answers_at_once_and_the_run_goes_on_answering_once() -> None:
    workflow = workflow_of(
        """
        - id: early
          respond: {status: 202, body: {queued: true}, continue: true}
        - id: later
          map: {done: true}
        - id: again
          respond: {status: 200, body: late}
        """
    )
    sent: list[tuple[int, Any]] = []

    async def answer_now(answer: Any) -> None:
        sent.append((answer.status, answer.body))

    call = invocation()
    outcome = await workflow.run(call, 1, answer_now=answer_now)
    assert sent == [(202, {"queued": True})]
    assert (outcome.ok, outcome.answer is not None and outcome.answer.status) == (True, 202)
    assert [r["id"] for r in outcome.steps] == ["early", "later", "again"]
    early, _, again = outcome.steps
    assert outcome.answered_at == early["answered_at"]
    assert early["started_at"] <= early["answered_at"]
    assert again["output"] == {"status": 200, "headers": {}, "body": "late", "sent": False}
    reply = reply_for(call, outcome)
    assert reply is not None
    assert (reply.status, reply.content) == (202, b'{"queued":true}')


async def test_a_step_failing_after_an_early_answer_fails_the_run_which_keeps_the_answer_sent() -> None:
    workflow = workflow_of(
        """
        - id: early
          respond: {status: 200, body: ok, continue: true}
        - id: call
          http: {url: "http://127.0.0.1:9/x"}
        """
    )
    sent: list[int] = []

    async def answer_now(answer: Any) -> None:
        sent.append(answer.status)

    call = invocation()
    outcome = await workflow.run(call, 1, answer_now=answer_now)
    assert sent == [200]
    assert (outcome.ok, outcome.error) == (
        False,
        "step call (http): this step needs connections, and none were given to the run",
    )
    reply = reply_for(call, outcome)
    assert reply is not None
    assert (reply.status, reply.content, reply.failed) == (200, b"ok", False)


async def test_a_steps_output_is_kept_up_to_64_kib_of_json_and_cut_past_it() -> None:
    # docs/triggers.md: "output (truncated past 64 KiB)"; the worker's HOOKLINE_STEP_OUTPUT_LIMIT too.
    workflow = workflow_of('- id: big\n  map: "{{ request.body }}"')
    envelope = len(msgspec.json.encode({"text": ""}))
    kept = await workflow.run(invocation({"text": "x" * (64 * 1024 - envelope)}), 1)
    assert kept.steps[0]["output"] == {"text": "x" * (64 * 1024 - envelope)}
    cut = await workflow.run(invocation({"text": "x" * (64 * 1024 - envelope + 1)}), 1)
    assert cut.steps[0]["output"]["truncated"] is True
    assert cut.steps[0]["output"]["size_bytes"] == 64 * 1024 + 1
    assert len(cut.steps[0]["output"]["preview"]) == 64 * 1024
    assert load_settings(BASE_SETTINGS, state_dir=Path("/nonexistent")).step_output_limit == 64 * 1024
