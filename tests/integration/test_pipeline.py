"""One webhook end to end: ingress -> RabbitMQ -> worker -> PostgreSQL -> back to the caller."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually, finished_execution, marker_run, new_key
from tests.stack import ROOT, Services

ECHO = """
workspace: {ws}
triggers:
  - name: echo
    methods: [GET, POST]
    auth: {{type: api_key}}
    mode: request_response
    timeout: 10s
    workflow:
      - respond:
          status: 200
          body: {{body: "{{{{ request.body }}}}", query: "{{{{ request.query }}}}"}}
  - name: inbox
    methods: [POST]
    auth: {{type: api_key}}
    workflow:
      - id: received
        map: {{body: "{{{{ request.body }}}}"}}
  - name: ready
    auth: {{type: none}}
    mode: request_response
    workflow: [{{respond: {{status: 204}}}}]
"""


@pytest.fixture
async def demo(db: Connection, workspace: str, stack: Services) -> tuple[str, str]:
    """The echo/inbox triggers in this test's workspace, and a key for both."""
    await apply_yaml(db, ECHO.format(ws=workspace))
    key = await new_key(db, workspace, "echo", "inbox")
    await wait_routable(stack, workspace)
    return workspace, key.key


async def wait_routable(stack: Services, workspace: str) -> None:
    """Until the file's last trigger answers: the ingress knows it and the dispatcher routed it."""

    async def probe() -> bool | None:
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{stack.base_url}/hooks/{workspace}/ready")
        return True if answer.status_code == 204 else None

    await eventually(probe)


async def test_request_response_answers_with_the_body_and_query(
    stack: Services, demo: tuple[str, str]
) -> None:
    workspace, key = demo
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        answer = await client.post(f"/hooks/{workspace}/echo?x=1", json={"a": 1}, headers={"X-API-Key": key})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"body": {"a": 1}, "query": {"x": "1"}}


async def test_async_call_is_accepted_then_recorded_as_succeeded(
    stack: Services, demo: tuple[str, str], db: Connection
) -> None:
    workspace, key = demo
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        answer = await client.post(f"/hooks/{workspace}/inbox", json={"order": 7}, headers={"X-API-Key": key})
        assert answer.status_code == 202
        execution_id = answer.json()["execution_id"]
        assert answer.headers["location"] == f"/hooks/{workspace}/inbox/executions/{execution_id}"
        execution = await finished_execution(db, execution_id)
        assert execution.status == "succeeded"
        assert execution.attempts == 1
        assert execution.output == {"body": {"order": 7}}
        assert execution.request["body"] == {"order": 7}
        shown = await client.get(
            f"/api/executions/{execution_id}", headers={"Authorization": "Bearer test-admin-token-0123456789"}
        )
        assert shown.status_code == 200
        assert shown.json()["status"] == "succeeded"
        assert shown.json()["steps"][0]["id"] == "received"


async def test_cli_shows_an_execution_as_json(stack: Services, demo: tuple[str, str], db: Connection) -> None:
    workspace, key = demo
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        answer = await client.post(f"/hooks/{workspace}/inbox", json={"n": 1}, headers={"X-API-Key": key})
    execution_id = answer.json()["execution_id"]
    await finished_execution(db, execution_id)
    shown = subprocess.run(
        [sys.executable, "-m", "shared.cli", "executions", "show", execution_id],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    import json

    record = json.loads(shown.stdout)
    assert record["id"] == execution_id
    assert record["status"] == "succeeded"
    assert record["output"] == {"body": {"n": 1}}


@pytest.mark.parametrize(
    ("path", "headers", "status", "problem"),
    [
        ("/hooks/{ws}/echo", {}, 401, "/problems/unauthorized"),
        (
            "/hooks/{ws}/echo",
            {"X-API-Key": "hk_not-a-real-key-at-all-0000000000"},
            401,
            "/problems/unauthorized",
        ),
        ("/hooks/{ws}/missing", {"X-API-Key": "{key}"}, 404, "/problems/trigger-not-found"),
        ("/hooks/no-such-workspace/echo", {"X-API-Key": "{key}"}, 404, "/problems/trigger-not-found"),
    ],
)
async def test_refused_calls_get_a_problem_document_and_run_nothing(
    stack: Services,
    demo: tuple[str, str],
    db: Connection,
    path: str,
    headers: dict[str, str],
    status: int,
    problem: str,
) -> None:
    workspace, key = demo
    before = await db.fetchval("select count(*) from executions where workspace = $1", workspace)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        answer = await client.post(
            path.format(ws=workspace),
            json={"a": 1},
            headers={k: v.format(key=key) for k, v in headers.items()},
        )
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == problem
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        await marker_run(db, client, f"/hooks/{workspace}/inbox", json={}, headers={"X-API-Key": key})
    after = await db.fetchval("select count(*) from executions where workspace = $1", workspace)
    assert after == before + 1  # the marker only


async def test_bearer_token_works_like_x_api_key(stack: Services, demo: tuple[str, str]) -> None:
    workspace, key = demo
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        answer = await client.get(f"/hooks/{workspace}/echo?q=2", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200
    assert answer.json() == {"body": None, "query": {"q": "2"}}


async def test_keys_are_stored_only_as_digests(db: Connection, workspace: str, stack: Services) -> None:
    await apply_yaml(db, ECHO.format(ws=workspace))
    key = await new_key(db, workspace, "echo")
    stored = await db.fetchrow("select * from api_keys where id = $1", key.id)
    assert stored["digest"] == hashlib.sha256(key.key.encode()).digest()
    assert key.key not in str(dict(stored))
    assert stored["prefix"] == key.key[:8]


def test_apply_from_the_cli_is_idempotent_and_versions_changes(
    stack: Services, workspace: str, tmp_path: Path
) -> None:
    path = tmp_path / "triggers.yaml"
    path.write_text(ECHO.format(ws=workspace))

    def apply() -> str:
        return subprocess.run(
            [sys.executable, "-m", "shared.cli", "apply", "-f", str(path)],
            env={**os.environ, **stack.env},
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout

    assert apply() == (
        f"workspace {workspace}: created\n"
        f"trigger {workspace}/echo: created (version 1)\n"
        f"trigger {workspace}/inbox: created (version 1)\n"
        f"trigger {workspace}/ready: created (version 1)\n"
    )
    assert apply() == (
        f"workspace {workspace}: unchanged\n"
        f"trigger {workspace}/echo: unchanged (version 1)\n"
        f"trigger {workspace}/inbox: unchanged (version 1)\n"
        f"trigger {workspace}/ready: unchanged (version 1)\n"
    )
    path.write_text(ECHO.format(ws=workspace).replace("timeout: 10s", "timeout: 5s"))
    assert apply() == (
        f"workspace {workspace}: unchanged\n"
        f"trigger {workspace}/echo: updated (version 2)\n"
        f"trigger {workspace}/inbox: unchanged (version 1)\n"
        f"trigger {workspace}/ready: unchanged (version 1)\n"
    )


def test_apply_of_an_invalid_file_changes_nothing_and_names_the_place(
    stack: Services, workspace: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(ECHO.format(ws=workspace).replace("mode: request_response", "mode: sometimes"))
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", "apply", "-f", str(path)],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"hookline: {path}: trigger echo, field mode: Invalid enum value 'sometimes'\n"


async def test_a_nul_character_is_run_and_recorded_and_blocks_nothing(
    stack: Services, demo: tuple[str, str], db: Connection
) -> None:
    # jsonb cannot hold U+0000: the call is still answered and recorded (as U+FFFD), and the
    # calls after it run; a refused record used to leave its message unsettled for good.
    workspace, key = demo
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    body = b'{"a": "x\\u0000y"}'
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=15) as client:
        echo = await client.post(f"/hooks/{workspace}/echo?q=%00", content=body, headers=headers)
        assert echo.status_code == 200, echo.text
        assert echo.json() == {"body": {"a": "x\x00y"}, "query": {"q": "\x00"}}  # the workflow got it as sent
        accepted = await client.post(f"/hooks/{workspace}/inbox?q=%00", content=body, headers=headers)
        assert accepted.status_code == 202, accepted.text
        after = await client.post(f"/hooks/{workspace}/inbox", json={"n": 2}, headers={"X-API-Key": key})
    recorded = await finished_execution(db, accepted.json()["execution_id"])
    assert recorded.status == "succeeded"
    assert recorded.request["body"] == {"a": "x\ufffdy"}
    assert recorded.request["query"] == {"q": "\ufffd"}
    assert (await finished_execution(db, after.json()["execution_id"])).status == "succeeded"
    answered = await finished_execution(db, echo.headers["x-execution-id"])
    assert answered.status == "succeeded"
