"""`hookline triggers|tokens|executions list|status` on a real stack (the API's service layer)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.integration.calls import cli, cli_json
from tests.stack import Services, free_port

TRIGGERS = """
workspace: {ws}
triggers:
  - name: plain
    auth: {{type: none}}
    workflow: [{{id: seen, map: {{n: "{{{{ request.body.n }}}}"}}}}]
  - name: keyed
    auth: {{type: api_key}}
    mode: request_response
    ordered: true
    workflow: [{{respond: {{status: 200}}}}]
"""


async def test_triggers_list_show_versions_pause_resume_and_delete(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    listed = cli_json(stack, "triggers", "list", "--workspace", workspace)
    assert [(t["name"], t["mode"], t["auth"], t["ordered"], t["paused"]) for t in listed] == [
        ("keyed", "request_response", "api_key", True, False),
        ("plain", "async", "none", False, False),
    ]
    assert listed[1]["url"] == f"{stack.base_url}/hooks/{workspace}/plain"
    table = cli(stack, "triggers", "list", "--workspace", workspace).stdout.splitlines()
    assert table[0].split() == ["TRIGGER", "VERSION", "MODE", "AUTH", "ORDERING", "STATE", "KEYS", "URL"]
    assert table[1].split()[:7] == [
        f"{workspace}/keyed",
        "1",
        "request_response",
        "api_key",
        "ordered",
        "running",
        "0",
    ]

    paused = cli(stack, "triggers", "pause", f"{workspace}/keyed")
    assert (
        paused.stdout == f"{workspace}/keyed paused: async calls are held, request-response calls get 503\n"
    )
    assert cli_json(stack, "triggers", "list", "--workspace", workspace)[0]["paused"] is True
    assert cli(stack, "triggers", "resume", f"{workspace}/keyed").stdout == f"{workspace}/keyed resumed\n"
    assert (
        cli(stack, "triggers", "resume", f"{workspace}/keyed").stdout == f"{workspace}/keyed was not paused\n"
    )

    shown = cli(stack, "triggers", "show", f"{workspace}/plain")
    assert '"workflow"' in shown.stdout
    assert [v["version"] for v in cli_json(stack, "triggers", "versions", f"{workspace}/plain")] == [1]
    assert cli(stack, "triggers", "delete", f"{workspace}/plain").returncode == 0
    missing = cli(stack, "triggers", "show", f"{workspace}/plain")
    assert (missing.returncode, missing.stderr) == (1, f"hookline: no trigger {workspace}/plain\n")


async def test_keys_create_json_tokens_and_the_run_log_list(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    key = cli_json(stack, "keys", "create", "--workspace", workspace, "--trigger", "keyed", "--label", "cli")
    assert (key["label"], key["triggers"], key["prefix"]) == ("cli", ["keyed"], key["key"][:8])

    async def sent() -> str | None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.post(f"/hooks/{workspace}/plain", json={"n": 1})
        return str(answer.json()["execution_id"]) if answer.status_code == 202 else None

    execution_id = await eventually(sent)
    await finished_execution(db, execution_id)
    page = cli_json(stack, "executions", "list", "--trigger", f"{workspace}/plain", "--status", "succeeded")
    assert [r["id"] for r in page["items"]] == [execution_id]
    assert page["next_cursor"] is None
    table = cli(stack, "executions", "list", "--workspace", workspace).stdout.splitlines()
    assert table[1].split()[:2] == [execution_id, page["items"][0]["received_at"][:10]]

    made = cli(stack, "tokens", "create", "--workspace", workspace, "--label", "team")
    token = made.stdout.strip()
    assert token.startswith("hlt_")
    listed = [t for t in cli_json(stack, "tokens", "list") if t["workspace"] == workspace]
    assert [(t["label"], t["prefix"]) for t in listed] == [("team", token[:8])]
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        seen = await client.get("/api/workspaces", headers={"Authorization": f"Bearer {token}"})
    assert [w["name"] for w in seen.json()] == [workspace]
    assert cli(stack, "tokens", "revoke", listed[0]["id"]).stdout == "revoked\n"
    assert (
        cli(stack, "tokens", "create", "--label", "x").stderr == "hookline: give --workspace W or --admin\n"
    )


KEYED = """
workspace: {ws}
triggers:
  - {{name: one, auth: {{type: api_key}}, mode: request_response, workflow: [{{respond: {{status: 200}}}}]}}
  - {{name: two, auth: {{type: api_key}}, mode: request_response, workflow: [{{respond: {{status: 200}}}}]}}
"""


async def test_cli_keys_open_their_triggers_attach_to_more_and_pasted_ones_are_not_echoed(
    stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, KEYED.format(ws=workspace))

    async def opens(trigger: str, key: str, status: int = 200) -> bool | None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            answer = await client.post(f"/hooks/{workspace}/{trigger}", json={}, headers={"X-API-Key": key})
        return True if answer.status_code == status else None

    made = cli(stack, "keys", "create", "--workspace", workspace, "--trigger", "one", "--label", "gen")
    assert made.returncode == 0, made.stderr
    generated = made.stdout.strip()
    assert len(made.stdout.splitlines()) == 1
    assert len(generated) >= 43  # 32 random bytes, URL-safe
    assert "it will not be shown again" in made.stderr
    await eventually(lambda: opens("one", generated))

    pasted = "partner-" + "k" * 40
    stored = cli(
        stack,
        "keys",
        "create",
        "--workspace",
        workspace,
        "--trigger",
        "one",
        "--label",
        "mine",
        "--key",
        pasted,
    )
    assert stored.returncode == 0, stored.stderr
    assert pasted not in stored.stdout + stored.stderr
    assert stored.stdout == ""
    await eventually(lambda: opens("one", pasted))
    assert await opens("two", pasted, 401)

    attached = cli(stack, "keys", "attach", pasted, "--workspace", workspace, "--trigger", "two")
    assert (attached.returncode, attached.stdout) == (0, "attached to two\n")
    await eventually(lambda: opens("two", pasted))

    short = cli(
        stack, "keys", "create", "--workspace", workspace, "--trigger", "one", "--label", "x", "--key", "abc"
    )
    assert short.returncode != 0
    assert short.stderr.startswith("hookline: a pasted key must have at least ")
    assert len(short.stderr.splitlines()) == 1
    assert "abc" not in short.stderr


async def test_status_reports_services_readiness_queues_and_failure_rate(stack: Services) -> None:
    # Every process of the stack reports itself (heartbeats), metrics port or not.
    wanted = {
        (name.split("-")[0], stack.processes[name].pid) for name in ("dispatcher", "worker-1", "worker-2")
    }

    def up(status: dict[str, Any]) -> set[tuple[str, int]]:
        return {
            (x["service"], int(x["instance"].rsplit(":", 1)[1]))
            for x in status["services"]
            if x["state"] == "up"
        }

    async def settled() -> dict[str, Any] | None:
        status: dict[str, Any] = await asyncio.to_thread(cli_json, stack, "status")
        work = next(q for q in status["queues"] if q["kind"] == "work")
        return status if work["consumers"] >= 2 and wanted <= up(status) else None

    status = await eventually(settled, timeout=20)  # the workers may still be starting
    assert status["ingress"]["ready"] is True
    assert (status["database"], status["broker"]) == (True, True)
    assert any(service == "ingress" for service, _ in up(status))
    assert set(status["failures"]) == {"minutes", "finished", "failed", "rate"}
    human = cli(stack, "status").stdout.splitlines()
    assert human[0] == f"ingress {stack.base_url}: ready (broker ok, registry ok, database ok)"
    assert human[1].split() == ["SERVICE", "INSTANCE", "STATE", "UP", "SINCE", "METRICS"]
    worker = next(line.split() for line in human if f":{stack.processes['worker-1'].pid} " in line)
    assert (worker[0], worker[2], worker[-1]) == ("worker", "up", "-")
    assert re.fullmatch(r"dead letters: \d+ waiting \(hookline dlq list\)", human[-3]), human[-3]
    assert isinstance(status["dead_letters"], int)
    assert human[-2].startswith("last 15 min: ")
    assert human[-1].startswith("retention: last sweep ")  # the dispatcher swept as it started
    assert {x["family"] for x in status["retention"]} == {
        "executions",
        "idempotency_keys",
        "rate_limits",
        "rejected_calls",
        "samples",
        "step_checkpoints",
    }


def test_status_with_postgresql_unreachable_still_reports_the_ingress_and_exits_1(stack: Services) -> None:
    # README: "With PostgreSQL unreachable it still reports the ingress and says so, and exits 1."
    nowhere = f"postgresql://hookline@127.0.0.1:{free_port()}/hookline"
    done = cli(stack, "status", env={"HOOKLINE_DATABASE_URL": nowhere})
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"ingress {stack.base_url}: ready (broker ok, registry ok, database ok)"
    assert lines[1:] == ["database: unreachable (services, queues and failures need it)"]
