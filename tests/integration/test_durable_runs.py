"""Durable runs (issue 16): checkpoints, idempotency keys, honest outcomes, early answers,
per-step retries and error handlers, with real workers and a local HTTP recorder as target."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.integration.calls import cli, delivery_stack
from tests.integration.target import Target
from tests.stack import Services, free_port

TRIGGERS = """
workspace: {ws}
triggers:
  - name: two-posts
    auth: {{type: none}}
    retry: {{max_attempts: 3, backoff: 1s}}
    workflow:
      - id: a
        http: {{method: POST, url: "{target}/{ws}/a"}}
      - id: b
        http: {{method: POST, url: "{target}/{ws}/b"}}
  - name: post-then-slow
    auth: {{type: none}}
    workflow:
      - id: a
        http: {{method: POST, url: "{target}/{ws}/a"}}
      - id: b
        http: {{method: POST, url: "{target}/slow/3000"}}
  - name: once
    auth: {{type: none}}
    retry: {{max_attempts: 1}}
    workflow:
      - id: a
        http: {{method: POST, url: "{target}/{ws}/a"}}
      - id: c
        http: {{method: POST, url: "{target}/{ws}/c"}}
  - name: early
    auth: {{type: none}}
    mode: request_response
    workflow:
      - id: ack
        respond: {{status: 202, body: {{queued: "{{{{ execution.id }}}}"}}, continue: true}}
      - id: slow
        http: {{method: POST, url: "{target}/slow/3000"}}
  - name: step-retry
    auth: {{type: none}}
    retry: {{max_attempts: 1}}
    workflow:
      - id: a
        http: {{method: POST, url: "{target}/{ws}/a"}}
      - id: b
        http: {{method: POST, url: "{target}/{ws}/b"}}
        retry: {{max_attempts: 3, backoff: 100ms, on: [5xx, connection]}}
  - name: doomed
    auth: {{type: none}}
    retry: {{max_attempts: 2, backoff: 250ms}}
    workflow:
      - id: a
        http: {{method: POST, url: "{target}/{ws}/a"}}
      - id: boom
        http: {{method: POST, url: "{target}/{ws}/boom"}}
    on_error:
      - id: alert
        http:
          method: POST
          url: "{target}/{ws}/alert"
          json: {{execution: "{{{{ execution.id }}}}", error: "{{{{ error }}}}"}}
  - name: ask-then-alert
    auth: {{type: none}}
    mode: request_response
    workflow:
      - id: boom
        http: {{method: POST, url: "{target}/{ws}/boom"}}
    on_error:
      - id: alert
        http: {{method: POST, url: "{target}/slow/2000", json: "{{{{ error.step }}}}"}}
  - name: refuse-async
    auth: {{type: none}}
    retry: {{max_attempts: 2, backoff: 250ms}}
    workflow:
      - id: refusal
        respond: {{status: 503}}
  - name: refuse
    auth: {{type: none}}
    mode: request_response
    workflow:
      - id: refusal
        respond: {{status: 500, body: {{error: try later}}}}
"""


@pytest.fixture(scope="module")
def durable_stack(amqp_url: str, database_url: str, log_dir: Path) -> Iterator[Services]:
    """One worker, with a metrics port (restarted by the tests that kill it)."""
    with delivery_stack(amqp_url, database_url, log_dir, workers=0) as stack:
        _start_worker(stack)
        yield stack


def _start_worker(stack: Services) -> int:
    port = free_port()
    stack.start("worker-1", "--concurrency", "16", "--metrics-port", str(port))
    stack.env["TEST_WORKER_METRICS"] = str(port)
    return port


async def _call(url: str, body: object = None) -> httpx.Response:
    """A call, sent again until the ingress knows the trigger (404) and its queue (503)."""

    async def probe() -> httpx.Response | None:
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(url, json=body)
        return None if answer.status_code in (404, 503) else answer

    return await eventually(probe, timeout=20)


async def _failed_runs(stack: Services, workspace: str, trigger: str) -> float:
    """hookline_worker_executions_total{status="failed"} of the trigger, from the worker."""
    port = stack.env["TEST_WORKER_METRICS"]
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    wanted = {'status="failed"', f'trigger="{trigger}"', f'workspace="{workspace}"'}
    for line in text.splitlines():
        if line.startswith("hookline_worker_executions_total{"):
            labels = set(line[line.index("{") + 1 : line.index("}")].split(","))
            if labels == wanted:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_retry_does_not_repeat_a_post_that_succeeded_and_keys_stay_the_same(
    durable_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    target.fail_times[f"/{workspace}/b"] = 2
    answer = await _call(f"{durable_stack.base_url}/hooks/{workspace}/two-posts")
    assert answer.status_code == 202, answer.text
    execution_id = answer.json()["execution_id"]

    done = await finished_execution(db, execution_id, timeout=30)
    a, b = target.posts_to(f"/{workspace}/a"), target.posts_to(f"/{workspace}/b")
    assert [p.idempotency_key for p in a] == [f"{execution_id}:a"]
    assert [p.idempotency_key for p in b] == [f"{execution_id}:b"] * 3
    assert (done.status, done.attempts, done.error) == ("succeeded", 3, None)
    assert [(s["id"], s["status"], s.get("resumed", False)) for s in done.steps] == [
        ("a", "succeeded", True),
        ("b", "succeeded", False),
    ]
    assert done.steps[0]["output"]["body"] == {"path": f"/{workspace}/a", "call": 1}
    assert done.steps[1]["output"]["body"] == {"path": f"/{workspace}/b", "call": 3}


@pytest.mark.fault
async def test_a_worker_killed_after_a_post_answered_does_not_post_again_on_redelivery(
    durable_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    answer = await _call(f"{durable_stack.base_url}/hooks/{workspace}/post-then-slow")
    assert answer.status_code == 202, answer.text
    execution_id = answer.json()["execution_id"]

    async def slow_step_started() -> bool | None:
        return any(p.idempotency_key == f"{execution_id}:b" for p in target.posts_to("/slow/3000")) or None

    await eventually(slow_step_started, timeout=20)
    assert len(target.posts_to(f"/{workspace}/a")) == 1
    victim = durable_stack.processes.pop("worker-1")
    victim.send_signal(signal.SIGKILL)  # /a answered and checkpointed, /slow in flight
    victim.wait(10)
    _start_worker(durable_stack)

    done = await finished_execution(db, execution_id, timeout=40)
    assert (done.status, done.attempts) == ("succeeded", 2)
    assert [p.idempotency_key for p in target.posts_to(f"/{workspace}/a")] == [f"{execution_id}:a"]
    slow = [p for p in target.posts_to("/slow/3000") if p.idempotency_key == f"{execution_id}:b"]
    assert len(slow) == 2  # the step that was running when the worker died runs again
    assert [(s["id"], s.get("resumed", False)) for s in done.steps] == [("a", True), ("b", False)]


async def test_a_respond_with_500_is_answered_recorded_failed_and_counted(
    durable_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    answer = await _call(f"{durable_stack.base_url}/hooks/{workspace}/refuse")
    assert (answer.status_code, answer.json()) == (500, {"error": "try later"})
    execution_id = answer.headers["x-execution-id"]

    done = await finished_execution(db, execution_id)
    assert (done.status, done.attempts, done.error) == ("failed", 1, "the workflow answered 500")
    assert done.response == {
        "execution_id": execution_id,
        "status": 500,
        "failed": True,
        "body": {"error": "try later"},
    }
    assert await _failed_runs(durable_stack, workspace, "refuse") == 1


async def test_an_operator_resumes_a_dead_execution_after_its_last_good_step(
    durable_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    target.fail_times[f"/{workspace}/c"] = 1
    answer = await _call(f"{durable_stack.base_url}/hooks/{workspace}/once")
    execution_id = answer.json()["execution_id"]
    dead = await finished_execution(db, execution_id, timeout=20)
    assert (dead.status, dead.attempts) == ("dead", 1)

    done = cli(durable_stack, "executions", "replay", execution_id, "--resume")
    assert (done.returncode, done.stdout) == (0, f"{execution_id}\n"), done.stderr

    async def resumed() -> bool | None:
        return (await finished_execution(db, execution_id)).attempts == 2 or None

    await eventually(resumed, timeout=20)
    again = await finished_execution(db, execution_id)
    assert (again.status, again.attempts, again.error) == ("succeeded", 2, None)
    assert len(target.posts_to(f"/{workspace}/a")) == 1
    assert len(target.posts_to(f"/{workspace}/c")) == 2
    assert [(s["id"], s.get("resumed", False)) for s in again.steps] == [("a", True), ("c", False)]
    refused = cli(durable_stack, "executions", "replay", execution_id, "--resume")
    assert (refused.returncode, refused.stderr.strip()) == (
        1,
        f"hookline: execution {execution_id} is succeeded; only a failed or dead one can resume",
    )


async def test_a_respond_with_continue_answers_in_under_a_second_and_the_run_then_succeeds(
    durable_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    await _call(f"{durable_stack.base_url}/hooks/{workspace}/early")  # the trigger is known
    async with httpx.AsyncClient(timeout=30) as client:
        sent = time.monotonic()
        answer = await client.post(f"{durable_stack.base_url}/hooks/{workspace}/early")
        took = time.monotonic() - sent
    execution_id = answer.headers["x-execution-id"]
    assert (answer.status_code, answer.json()) == (202, {"queued": execution_id})
    assert took < 1, f"answered after {took:.2f} s"

    done = await finished_execution(db, execution_id, timeout=20)
    assert (done.status, done.attempts) == ("succeeded", 1)
    ack, slow = done.steps
    assert done.response == {"execution_id": execution_id, "status": 202, "body": {"queued": execution_id}}
    assert ack["started_at"] <= ack["answered_at"] < slow["started_at"] + 0.5
    assert (slow["status"], slow["duration_ms"] >= 3000) == ("succeeded", True)
    assert (done.finished_at.timestamp() - ack["answered_at"]) >= 3


async def test_a_step_retry_calls_a_flaky_target_again_within_one_run(
    durable_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    target.fail_times[f"/{workspace}/b"] = 2
    answer = await _call(f"{durable_stack.base_url}/hooks/{workspace}/step-retry")
    execution_id = answer.json()["execution_id"]

    done = await finished_execution(db, execution_id, timeout=20)
    assert (done.status, done.attempts) == ("succeeded", 1)
    assert [p.idempotency_key for p in target.posts_to(f"/{workspace}/a")] == [f"{execution_id}:a"]
    assert [p.idempotency_key for p in target.posts_to(f"/{workspace}/b")] == [f"{execution_id}:b"] * 3
    assert [(s["id"], s["status"], s.get("attempts")) for s in done.steps] == [
        ("a", "succeeded", None),
        ("b", "succeeded", 3),
    ]


async def test_on_error_runs_exactly_once_per_dead_run_with_the_error(
    durable_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    target.fail_times[f"/{workspace}/boom"] = 100
    answer = await _call(f"{durable_stack.base_url}/hooks/{workspace}/doomed")
    execution_id = answer.json()["execution_id"]

    dead = await finished_execution(db, execution_id, timeout=20)
    assert (dead.status, dead.attempts) == ("dead", 2)
    assert len(target.posts_to(f"/{workspace}/a")) == 1  # checkpointed by the first run
    assert len(target.posts_to(f"/{workspace}/boom")) == 2
    [alert] = target.posts_to(f"/{workspace}/alert")
    error = f"step boom (http): POST {target.base_url}/{workspace}/boom answered 500; expected 2xx"
    assert alert.idempotency_key == f"{execution_id}:alert"
    assert json.loads(alert.body) == {
        "execution": execution_id,
        "error": {"message": error, "step": "boom", "status": "dead", "attempts": 2},
    }
    assert dead.error == error
    assert [(s["id"], s["status"], s.get("on_error", False)) for s in dead.steps] == [
        ("a", "succeeded", False),
        ("boom", "failed", False),
        ("alert", "succeeded", True),
    ]


async def test_a_waiting_caller_gets_its_failure_before_the_on_error_steps_run(
    durable_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    target.fail_times[f"/{workspace}/boom"] = 100
    url = f"{durable_stack.base_url}/hooks/{workspace}/ask-then-alert"
    await _call(url)  # the trigger is known
    async with httpx.AsyncClient(timeout=30) as client:
        sent = time.monotonic()
        answer = await client.post(url)
        took = time.monotonic() - sent
    execution_id = answer.headers["x-execution-id"]
    assert (answer.status_code, answer.json()["type"]) == (500, "/problems/workflow-failed")
    assert took < 1.5, f"answered after {took:.2f} s"

    async def handled() -> bool | None:
        execution = await finished_execution(db, execution_id)
        return len(execution.steps) == 2 or None

    await eventually(handled, timeout=20)
    done = await finished_execution(db, execution_id)
    assert (done.status, done.attempts, done.response["status"]) == ("failed", 1, 500)
    assert [(s["id"], s["status"], s.get("on_error", False)) for s in done.steps] == [
        ("boom", "failed", False),
        ("alert", "succeeded", True),
    ]
    alerts = [p for p in target.posts_to("/slow/2000") if p.idempotency_key == f"{execution_id}:alert"]
    assert [json.loads(p.body) for p in alerts] == ["boom"]


async def test_an_async_run_answering_5xx_is_retried_as_its_trigger_says_then_dead(
    durable_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    answer = await _call(f"{durable_stack.base_url}/hooks/{workspace}/refuse-async")
    assert answer.status_code == 202, answer.text
    dead = await finished_execution(db, answer.json()["execution_id"], timeout=20)
    assert (dead.status, dead.attempts, dead.error) == ("dead", 2, "the workflow answered 503")
