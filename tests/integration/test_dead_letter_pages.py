"""Dead letters as an operator and a tenant page through them: newest first, a page at a time,
filtered by trigger and time, a workspace token seeing only its own, replay by filter.

They die for real (an http step against a failing local target, one attempt), the dispatcher
moves them from the dead-letter queue into PostgreSQL, and the API pages over the table.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx

from shared.broker.link import connect_once
from shared.db.pool import Connection
from shared.db.tokens import create_token
from shared.wire import topology
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.integration.calls import cli_json
from tests.integration.target import Target
from tests.stack import Services

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}

TRIGGERS = """
workspace: {ws}
triggers:
  - name: flaky
    auth: {{type: none}}
    retry: {{max_attempts: 1}}
    workflow:
      - id: call
        http: {{url: "{target}/fail/{{{{ request.body.tag }}}}", timeout: 5s}}
  - name: other
    auth: {{type: none}}
    retry: {{max_attempts: 1}}
    workflow:
      - id: call
        http: {{url: "{target}/fail/{{{{ request.body.tag }}}}", timeout: 5s}}
  - name: ready
    auth: {{type: none}}
    mode: request_response
    workflow: [{{respond: {{status: 204}}}}]
"""


async def _applied(db: Connection, stack: Services, target: Target, ws: str) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=ws, target=target.base_url))
    target.failing.add(ws)

    async def routable() -> bool | None:
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{stack.base_url}/hooks/{ws}/ready")
        return True if answer.status_code == 204 else None

    await eventually(routable, timeout=20)


async def _dead(db: Connection, stack: Services, ws: str, trigger: str, count: int) -> list[str]:
    """Send `count` calls that fail once and die; their ids once each is recorded dead."""
    ids = []
    async with httpx.AsyncClient() as client:
        for n in range(count):
            answer = await client.post(f"{stack.base_url}/hooks/{ws}/{trigger}", json={"tag": ws, "n": n})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["execution_id"])
    for execution_id in ids:
        assert (await finished_execution(db, execution_id, timeout=30)).status == "dead"
    return ids


async def _listed(api: httpx.AsyncClient, count: int, **params: Any) -> list[dict[str, Any]]:
    """Every page of the list, once `count` letters are there (the dispatcher moves them)."""

    async def everything() -> list[dict[str, Any]] | None:
        letters: list[dict[str, Any]] = []
        cursor = None
        while True:
            answer = await api.get(
                "/dead-letters", params={**params, **({"cursor": cursor} if cursor else {})}
            )
            assert answer.status_code == 200, answer.text
            letters += answer.json()
            cursor = answer.headers.get("x-next-cursor")
            if cursor is None:
                return letters if len(letters) >= count else None

    return await eventually(everything, timeout=20, every=0.2)


async def test_dead_letters_are_listed_page_by_page_newest_first_and_filtered_by_trigger_and_time(
    api: httpx.AsyncClient, stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await _applied(db, stack, target, workspace)
    early = await _dead(db, stack, workspace, "flaky", 3)
    await _listed(api, 3, workspace=workspace)
    # x-death times are whole seconds: the next whole second splits the two batches.
    split = int(time.time()) + 1
    await eventually(lambda: _true_when(time.time() >= split), timeout=3, every=0.05)
    late = await _dead(db, stack, workspace, "flaky", 2) + await _dead(db, stack, workspace, "other", 2)

    whole = await _listed(api, 7, workspace=workspace)
    pages = []
    cursor = None
    while True:
        params = {"workspace": workspace, "limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = await api.get("/dead-letters", params=params)
        pages.append([x["id"] for x in answer.json()])
        cursor = answer.headers.get("x-next-cursor")
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    listed = [x for p in pages for x in p]
    assert listed == [x["id"] for x in whole]
    assert sorted(listed) == sorted(early + late)  # each once
    assert set(listed[:4]) == set(late)  # newest first
    assert set(listed[4:]) == set(early)
    assert [x["died_at"] for x in whole] == sorted((x["died_at"] for x in whole), reverse=True)
    first = whole[-1]  # two workers: the first three died in any order among themselves
    assert first["id"] in early
    assert first | {"id": None, "died_at": None} == {
        "id": None,
        "workspace": workspace,
        "trigger": "flaky",
        "reason": "rejected",
        # Died in its trigger's own queue (an unordered trigger's calls are routed there).
        "queue": topology.trigger_queue_name(stack.env["HOOKLINE_AMQP_PREFIX"], workspace, "flaky"),
        "died_at": None,
        "status": "dead",
        "attempts": 1,
        "error": f"step call (http): GET {target.base_url}/fail/{workspace} answered 500; expected 2xx",
    }

    by_trigger = await _listed(api, 2, workspace=workspace, trigger="other")
    assert {x["id"] for x in by_trigger} == set(late[2:])
    at = datetime.fromtimestamp(split, UTC).isoformat()
    assert {x["id"] for x in await _listed(api, 4, workspace=workspace, since=at)} == set(late)
    assert {x["id"] for x in await _listed(api, 3, workspace=workspace, until=at)} == set(early)

    # The CLI pages the same table with the same filters.
    since = await asyncio.to_thread(cli_json, stack, "dlq", "list", "--workspace", workspace, "--since", at)
    assert [x["id"] for x in since] == [x["id"] for x in whole if x["id"] in late]
    one = await asyncio.to_thread(
        cli_json, stack, "dlq", "list", "--trigger", f"{workspace}/other", "--limit", "1"
    )
    assert [x["id"] for x in one] == [by_trigger[0]["id"]]

    bad = await api.get("/dead-letters", params={"workspace": workspace, "cursor": "x'; drop table"})
    assert (bad.status_code, bad.headers["content-type"]) == (400, "application/problem+json")
    assert bad.json()["detail"] == 'cursor "x\'; drop table" is not a dead-letter cursor'


async def _true_when(condition: bool) -> bool | None:
    return True if condition else None


async def test_a_workspace_token_sees_and_replays_only_its_own_dead_letters(
    api: httpx.AsyncClient, stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    other = f"{workspace}-b"
    await _applied(db, stack, target, workspace)
    await _applied(db, stack, target, other)
    mine = await _dead(db, stack, other, "flaky", 2)
    theirs = await _dead(db, stack, workspace, "flaky", 2)
    await _listed(api, 2, workspace=workspace)
    await _listed(api, 2, workspace=other)
    token = (await create_token(db, other, "tenant")).token
    tenant = {"Authorization": f"Bearer {token}"}

    seen = await _listed(api, 2, **{"limit": 1})  # the admin sees every workspace's
    assert set(mine + theirs) <= {x["id"] for x in seen}
    api.headers.update(tenant)
    assert {x["id"] for x in await _listed(api, 2)} == set(mine)
    forbidden = await api.get("/dead-letters", params={"workspace": workspace})
    assert forbidden.status_code == 403
    assert (await api.post(f"/dead-letters/{theirs[0]}/replay")).status_code == 404
    batch = await api.post("/dead-letters/replay", json={"ids": theirs})
    assert batch.json() == {"replayed": [], "missing": sorted(theirs), "failed": []}
    everything = await api.post("/dead-letters/replay", json={"all": True})
    assert sorted(everything.json()["replayed"]) == sorted(mine)
    api.headers.update(ADMIN)
    assert {x["id"] for x in await _listed(api, 2, workspace=workspace)} == set(theirs)  # untouched


async def test_replay_by_filter_runs_every_matching_letter_and_leaves_the_others(
    api: httpx.AsyncClient, stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await _applied(db, stack, target, workspace)
    flaky = await _dead(db, stack, workspace, "flaky", 3)
    other = await _dead(db, stack, workspace, "other", 2)
    await _listed(api, 5, workspace=workspace)
    neither = await api.post("/dead-letters/replay", json={"workspace": workspace})
    assert (neither.status_code, neither.json()["detail"]) == (
        400,
        "give `ids` or `all: true`, not both and not neither",
    )

    target.failing.discard(workspace)  # the target is back
    replayed = await api.post(
        "/dead-letters/replay", json={"all": True, "workspace": workspace, "trigger": "flaky"}
    )
    assert replayed.status_code == 200, replayed.text
    assert sorted(replayed.json()["replayed"]) == sorted(flaky)
    for execution_id in flaky:

        async def succeeded(x: str = execution_id) -> bool | None:
            row = await db.fetchrow("select status, attempts from executions where id = $1::uuid", x)
            return True if row is not None and (row["status"], row["attempts"]) == ("succeeded", 2) else None

        await eventually(succeeded, timeout=20)
    assert {x["id"] for x in await _listed(api, 2, workspace=workspace)} == set(other)


async def test_a_dead_letter_delivered_twice_is_listed_once(
    api: httpx.AsyncClient, stack: Services, db: Connection, workspace: str
) -> None:
    # What a dispatcher that stored a batch and died before its ack hands to the next one.
    letter_id = f"twice-{workspace}"
    queue = topology.dead_letter_queue_name(stack.env["HOOKLINE_AMQP_PREFIX"])
    async with connect_once(stack.env["HOOKLINE_AMQP_URL"], "test") as broker:
        channel = await broker.channel()
        for _ in range(2):
            await channel.default_exchange.publish(
                aio_pika.Message(b"\x00 junk", message_id=letter_id), queue
            )
        await channel.close()
    try:

        async def moved() -> bool | None:
            depth = await db.fetchval("select count(*) from dead_letters where id = $1", letter_id)
            return True if depth == 1 else None

        await eventually(moved, timeout=10)

        async def queue_empty() -> bool | None:
            async with connect_once(stack.env["HOOKLINE_AMQP_URL"], "test") as broker:
                channel = await broker.channel()
                declared = await channel.declare_queue(queue, passive=True)
                await channel.close()
            return True if declared.declaration_result.message_count == 0 else None

        await eventually(queue_empty, timeout=10)
        assert await db.fetchval("select count(*) from dead_letters where id = $1", letter_id) == 1
    finally:
        await db.execute("delete from dead_letters where id = $1", letter_id)


async def test_two_replays_at_once_put_each_letter_back_once(
    api: httpx.AsyncClient, stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await _applied(db, stack, target, workspace)
    ids = await _dead(db, stack, workspace, "flaky", 20)
    await _listed(api, 20, workspace=workspace)
    target.failing.discard(workspace)
    body = {"all": True, "workspace": workspace}
    first, second = await asyncio.gather(
        api.post("/dead-letters/replay", json=body), api.post("/dead-letters/replay", json=body)
    )
    one, other = first.json()["replayed"], second.json()["replayed"]
    assert not set(one) & set(other)
    assert sorted(one + other) == sorted(ids)

    async def ran_once_more() -> bool | None:
        rows = await db.fetch("select status, attempts from executions where id = any($1::uuid[])", ids)
        return True if {(r["status"], r["attempts"]) for r in rows} == {("succeeded", 2)} else None

    await eventually(ran_once_more, timeout=30)
