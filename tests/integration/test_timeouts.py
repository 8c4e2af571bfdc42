"""Request-response past its timeout: 504 with the execution id, or 202 with `on_timeout: accept`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually, new_key
from tests.stack import Services, services

TRIGGERS = """
workspace: {ws}
triggers:
  - name: slow
    auth: {{type: api_key}}
    mode: request_response
    timeout: 500ms
    workflow: [{{respond: {{status: 201, body: {{done: "{{{{ request.body.n }}}}"}}}}}}]
  - name: patient
    auth: {{type: api_key}}
    mode: request_response
    timeout: 500ms
    on_timeout: accept
    workflow: [{{respond: {{status: 201, body: {{done: true}}}}}}]
"""


@pytest.fixture(scope="module")
def idle_stack(amqp_url: str, database_url: str, log_dir: Path) -> Iterator[Services]:
    """Ingress and dispatcher with no worker: every request-response call times out."""
    prefix = f"idle-{uuid.uuid4().hex[:6]}"
    (log_dir / prefix).mkdir()
    with services(amqp_url, database_url, log_dir / prefix, workers=0, prefix=prefix) as running:
        yield running


async def test_timeout_is_504_with_the_execution_id_and_the_status_url_has_the_result_later(
    idle_stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    key = (await new_key(db, workspace, "slow", "patient")).key
    headers = {"X-API-Key": key}
    url = f"{idle_stack.base_url}/hooks/{workspace}/slow"

    async def timed_out() -> httpx.Response | None:
        async with httpx.AsyncClient() as client:
            answer = await client.post(url, json={"n": 7}, headers=headers)
        return answer if answer.status_code == 504 else None

    # The stack is new: its dispatcher's first reconcile declares a queue for every live
    # trigger of the session's database before this one is routed.
    answer = await eventually(timed_out, timeout=60)
    problem = answer.json()
    execution_id = problem["execution_id"]
    status_url = f"/hooks/{workspace}/slow/executions/{execution_id}"
    assert problem == {
        "type": "/problems/timeout",
        "title": "The workflow did not answer in time",
        "status": 504,
        "detail": "the workflow did not answer in time; it may still finish",
        "execution_id": execution_id,
        "status_url": status_url,
    }
    assert answer.headers["location"] == status_url
    # Answered at the trigger's timeout (500 ms), not before and not much later.
    assert 0.5 <= answer.elapsed.total_seconds() < 3
    async with httpx.AsyncClient(base_url=idle_stack.base_url) as client:
        pending = await client.get(status_url, headers=headers)
        assert pending.status_code == 404
        assert (await client.get(status_url)).status_code == 401

    idle_stack.start("worker-late")

    async def result() -> dict[str, object] | None:
        async with httpx.AsyncClient(base_url=idle_stack.base_url) as client:
            found = await client.get(status_url, headers=headers)
        return found.json() if found.status_code == 200 else None

    done = await eventually(result, timeout=30)
    assert done["status"] == "succeeded"
    assert done["response"] == {"execution_id": execution_id, "status": 201, "body": {"done": 7}}
    idle_stack.stop("worker-late")


async def test_on_timeout_accept_answers_202_with_the_status_url(
    idle_stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    key = (await new_key(db, workspace, "patient")).key

    async def accepted() -> httpx.Response | None:
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"{idle_stack.base_url}/hooks/{workspace}/patient", json={}, headers={"X-API-Key": key}
            )
        return answer if answer.status_code == 202 else None

    answer = await eventually(accepted, timeout=60)  # routed after the first reconcile
    execution_id = answer.json()["execution_id"]
    assert answer.json() == {
        "execution_id": execution_id,
        "status_url": f"/hooks/{workspace}/patient/executions/{execution_id}",
    }
    assert answer.headers["location"] == f"/hooks/{workspace}/patient/executions/{execution_id}"
    assert 0.5 <= answer.elapsed.total_seconds() < 3
