"""Retries with backoff, dead letters and replays: unordered runs retry without blocking
anyone; an ordered lane retries in place, then skips (dead letter) or stops until resumed."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.db.executions import get_execution
from shared.db.pool import Connection
from shared.errors import NotFound
from tests.helpers import apply_yaml, eventually, filed_as_dead_letters, finished_execution
from tests.integration.calls import (
    all_finished,
    cli,
    cli_json,
    delivery_stack,
    never_overlap,
    runs,
    send,
    send_many,
    worker_that_logged,
)
from tests.integration.target import Target
from tests.stack import Services

TRIGGERS = """
workspace: {ws}
triggers:
  - name: flaky
    auth: {{type: none}}
    retry: {{max_attempts: 3, backoff: 1s}}
    workflow:
      - id: call
        http: {{url: "{target}/fail/{{{{ request.body.tag }}}}"}}
  - name: crowd
    auth: {{type: none}}
    retry: {{max_attempts: 3, backoff: 1s}}
    workflow:
      - id: call
        http: {{url: "{target}/fail/{{{{ request.body.tag }}}}"}}
  - name: fine
    auth: {{type: none}}
    workflow:
      - id: call
        http: {{url: "{target}/work/20"}}
  - name: ask
    auth: {{type: none}}
    mode: request_response
    retry: {{max_attempts: 3, backoff: 250ms}}
    workflow:
      - id: call
        http: {{url: "{target}/fail/{{{{ request.body.tag }}}}"}}
  - name: slow-lane
    auth: {{type: none}}
    ordered: true
    retry: {{max_attempts: 3, backoff: 3s, on_exhausted: skip}}
    workflow:
      - id: call
        http: {{url: "{target}/fail/{{{{ request.body.tag }}}}"}}
  - name: lane
    auth: {{type: none}}
    ordered: true
    retry: {{max_attempts: 3, backoff: 250ms, on_exhausted: {on_exhausted}}}
    workflow:
      - id: call
        http: {{url: "{target}/fail/{{{{ request.body.tag }}}}"}}
"""


@pytest.fixture(scope="module")
def retry_stack(amqp_url: str, database_url: str, log_dir: Path) -> Iterator[Services]:
    with delivery_stack(amqp_url, database_url, log_dir, workers=3) as stack:
        yield stack


async def _accepting(url: str, body: dict[str, object]) -> str:
    async def probe() -> str | None:
        async with httpx.AsyncClient() as client:
            answer = await client.post(url, json=body)
        return str(answer.json()["execution_id"]) if answer.status_code == 202 else None

    return await eventually(probe, timeout=20)


async def test_a_failing_run_retries_with_backoff_without_blocking_others_then_is_dead_and_replayable(
    retry_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url, on_exhausted="skip"))
    bad = f"{workspace}-bad"
    target.failing.add(bad)
    base = f"{retry_stack.base_url}/hooks/{workspace}"
    failing_id = await _accepting(f"{base}/flaky", {"tag": bad})
    # More failing runs than the workers have slots (3 x 16): were they to wait out their
    # backoff in place, every slot would be taken and the fine calls would wait behind them.
    crowd_ids = await send_many(f"{base}/crowd", [{"tag": bad}] * 64)
    fine_ids = await send_many(f"{base}/fine", [{"n": n} for n in range(50)])

    dead = await finished_execution(db, failing_id, timeout=30)
    assert (dead.status, dead.attempts) == ("dead", 3)
    assert dead.error == f"step call (http): GET {target.base_url}/fail/{bad} answered 500; expected 2xx"
    # Backoff: 1 s then 2 s (the nearest delay tiers) between the three attempts.
    assert (dead.finished_at - dead.received_at).total_seconds() >= 3
    fine = await all_finished(db, workspace, 50, timeout=30, trigger="fine")
    assert {r.id for r in fine} == set(fine_ids)
    assert max(r.finished_at for r in fine) < dead.started_at.timestamp(), "the retries blocked nobody"
    crowd = await all_finished(db, workspace, 64, timeout=60, trigger="crowd")
    assert {r.id for r in crowd} == set(crowd_ids)
    assert {(r.status, r.attempts) for r in crowd} == {("dead", 3)}
    assert max(r.finished_at for r in fine) < min(r.started_at for r in crowd), "the retries blocked nobody"

    await filed_as_dead_letters(db, failing_id, *crowd_ids)
    [letter] = cli_json(retry_stack, "dlq", "list", "--trigger", f"{workspace}/flaky")
    assert letter | {"died_at": None} == {
        "id": failing_id,
        "workspace": workspace,
        "trigger": "flaky",
        "reason": "rejected",
        "queue": f"{retry_stack.env['HOOKLINE_AMQP_PREFIX']}.work",
        "died_at": None,
        "status": "dead",
        "attempts": 3,
        "error": dead.error,
    }

    table = cli(retry_stack, "dlq", "list", "--trigger", f"{workspace}/flaky")
    assert table.stdout == (
        f"{'ID':36}  {'TRIGGER':30}  {'REASON':14}  {'ATTEMPTS':8}  ERROR\n"
        f"{failing_id:36}  {workspace + '/flaky':30}  {'rejected':14}  {'3':8}  {dead.error[:80]}\n"
    )
    assert table.stderr == "1 dead letter(s)\n"

    target.failing.discard(bad)  # the target is back: replay the dead letter
    replayed = cli(retry_stack, "dlq", "replay", failing_id)
    assert (replayed.returncode, replayed.stdout) == (0, f"replayed {failing_id} ({workspace}/flaky)\n")

    async def succeeded() -> bool | None:
        execution = await get_execution(db, failing_id)
        return True if execution.status == "succeeded" else None

    await eventually(succeeded, timeout=20)
    assert (await get_execution(db, failing_id)).attempts == 4
    assert cli_json(retry_stack, "dlq", "list", "--trigger", f"{workspace}/flaky") == []

    # The crowd's 64, all at once, by trigger: each runs again (attempt 4) and succeeds.
    crowd_letters = cli_json(retry_stack, "dlq", "list", "--trigger", f"{workspace}/crowd")
    assert {x["id"] for x in crowd_letters} == set(crowd_ids)
    everything = cli(retry_stack, "dlq", "replay", "--all", "--trigger", f"{workspace}/crowd")
    assert everything.returncode == 0, everything.stderr

    async def crowd_succeeded() -> bool | None:
        rows = await runs(db, workspace, "crowd")
        return True if {(r.status, r.attempts) for r in rows} == {("succeeded", 4)} else None

    await eventually(crowd_succeeded, timeout=30)
    assert cli_json(retry_stack, "dlq", "list", "--trigger", f"{workspace}/crowd") == []


async def test_an_execution_replay_is_a_new_execution_linked_to_the_old_one(
    retry_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url, on_exhausted="skip"))
    old_id = await _accepting(f"{retry_stack.base_url}/hooks/{workspace}/fine", {"n": 7})
    old = await finished_execution(db, old_id)
    # README: a replay runs on the trigger's *current* version.
    changed = TRIGGERS.format(ws=workspace, target=target.base_url, on_exhausted="skip")
    await apply_yaml(db, changed.replace(f"{target.base_url}/work/20", f"{target.base_url}/work/21"))

    async def current_version() -> int | None:
        version = await db.fetchval(
            "select version from triggers where workspace = $1 and name = 'fine'", workspace
        )
        return version if version and version > old.trigger_version else None

    version = await eventually(current_version)
    done = cli(retry_stack, "executions", "replay", old_id)
    assert done.returncode == 0, done.stderr
    new_id = done.stdout.strip()
    assert new_id != old_id
    new = await finished_execution(db, new_id)
    assert (new.status, new.replay_of, new.request, new.attempts) == ("succeeded", old_id, old.request, 1)
    assert new.trigger_version == version


async def test_a_failed_request_response_call_is_answered_once_and_never_retried(
    retry_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url, on_exhausted="skip"))
    bad = f"{workspace}-bad"
    target.failing.add(bad)
    url = f"{retry_stack.base_url}/hooks/{workspace}/ask"

    async def answered() -> httpx.Response | None:
        async with httpx.AsyncClient(timeout=15) as client:
            answer = await client.post(url, json={"tag": bad})
        # 404 until the ingress knows the trigger, 503 until the dispatcher routes its key.
        return answer if answer.status_code not in (404, 503) else None

    answer = await eventually(answered, timeout=30)
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    execution_id = answer.json()["execution_id"]
    assert answer.json() == {
        "type": "/problems/workflow-failed",
        "title": "The workflow failed",
        "status": 500,
        "detail": f"step call (http): GET {target.base_url}/fail/{bad} answered 500; expected 2xx",
        "execution_id": execution_id,
    }
    # Recorded before the answer was sent: final at once, one attempt, no dead letter.
    execution = await get_execution(db, execution_id)
    assert (execution.status, execution.attempts) == ("failed", 1)
    assert cli_json(retry_stack, "dlq", "list", "--trigger", f"{workspace}/ask") == []


@pytest.mark.parametrize(
    ("on_exhausted", "resume"), [("skip", None), ("stop", "--retry"), ("stop", "--skip")]
)
async def test_an_ordered_lane_retries_in_place_then_skips_or_stops_until_resumed(
    retry_stack: Services,
    db: Connection,
    workspace: str,
    target: Target,
    on_exhausted: str,
    resume: str | None,
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url, on_exhausted=on_exhausted))
    bad, ok = f"{workspace}-bad", f"{workspace}-ok"
    target.failing.add(bad)
    url = f"{retry_stack.base_url}/hooks/{workspace}/lane"
    await _accepting(url, {"seq": -1, "tag": ok})
    async with httpx.AsyncClient() as client:
        ids = [await send(client, url, {"seq": seq, "tag": bad if seq == 2 else ok}) for seq in range(6)]

    if on_exhausted == "stop":
        [hold] = await eventually(lambda: _holds(retry_stack, workspace), timeout=20)
        assert hold["execution_id"] == ids[2]
        # The lane holds seq 2: nothing behind it has run.
        assert [r.body["seq"] for r in await runs(db, workspace)] == [-1, 0, 1, 2]
        assert (await get_execution(db, ids[2])).status == "failed"
        if resume == "--retry":
            target.failing.discard(bad)
        # README: `--skip` dead-letters it (replayable later) and goes on; `--retry` runs it again.
        resumed = cli(retry_stack, "lanes", "resume", f"{workspace}/lane", str(resume))
        assert resumed.returncode == 0, resumed.stderr

    done = await all_finished(db, workspace, 7, timeout=30)
    assert [r.body["seq"] for r in done] == [-1, 0, 1, 2, 3, 4, 5]
    never_overlap(done)
    third = done[3]
    if on_exhausted == "skip" or resume == "--skip":
        # Tried three times in place (backoff 0.25 s, 0.5 s), dead-lettered, then the lane went on.
        assert (third.status, third.attempts) == ("dead", 3)
        if resume is None:
            assert third.finished_at - third.started_at < 1  # the record keeps the last attempt
        await filed_as_dead_letters(db, ids[2])
        assert [x["id"] for x in cli_json(retry_stack, "dlq", "list", "--trigger", f"{workspace}/lane")] == [
            ids[2]
        ]
    else:
        assert (third.status, third.attempts) == ("succeeded", 4)
        assert cli_json(retry_stack, "lanes", "list", "--trigger", f"{workspace}/lane") == []
    assert {r.status for r in done if r is not third} == {"succeeded"}


@pytest.mark.fault
async def test_an_ordered_retry_handed_back_by_a_killed_worker_keeps_its_attempt_count(
    retry_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url, on_exhausted="skip"))
    bad = f"{workspace}-bad"
    target.failing.add(bad)
    execution_id = await _accepting(f"{retry_stack.base_url}/hooks/{workspace}/slow-lane", {"tag": bad})

    async def retrying() -> bool | None:
        try:
            execution = await get_execution(db, execution_id)
        except NotFound:
            return None  # not run yet
        return True if (execution.status, execution.attempts) == ("retrying", 1) else None

    await eventually(retrying, timeout=20)  # attempt 1 failed; its worker waits 3 s in place
    holder = await worker_that_logged(retry_stack, execution_id)
    retry_stack.stop(holder, signal.SIGKILL, timeout=10)
    try:
        dead = await finished_execution(db, execution_id, timeout=40)
    finally:
        retry_stack.start(holder, "--concurrency", "16")
    # Attempts 2 and 3 on another worker, then dead-lettered: 3 runs in all, not 1 + 3.
    assert (dead.status, dead.attempts) == ("dead", 3)


async def _holds(stack: Services, workspace: str) -> list[dict[str, object]] | None:
    holds: list[dict[str, object]] = cli_json(stack, "lanes", "list", "--trigger", f"{workspace}/lane")
    return holds or None
