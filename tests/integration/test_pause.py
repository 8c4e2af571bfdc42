"""Pause and resume: calls held on the broker while paused (or refused, if a caller waits),
run after the resume, in arrival order for an ordered trigger; nothing lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared.db.pool import Connection
from tests.helpers import apply_yaml, eventually
from tests.stack import Services

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}

TRIGGERS = """
workspace: {ws}
triggers:
  - name: loose
    auth: {{type: none}}
    workflow: [{{id: seen, map: {{n: "{{{{ request.body.n }}}}"}}}}]
  - name: lane
    auth: {{type: none}}
    ordered: true
    workflow: [{{id: seen, map: {{n: "{{{{ request.body.n }}}}"}}}}]
  - name: asks
    auth: {{type: none}}
    mode: request_response
    workflow: [{{respond: {{status: 200, body: answered}}}}]
"""

# Fails at once (nothing listens on the discard port) and retries every 250 ms.
FAILING = """
workspace: {ws}
triggers:
  - name: failing
    auth: {{type: none}}
    retry: {{max_attempts: 100, backoff: 250ms, max_backoff: 250ms}}
    workflow: [{{id: call, http: {{url: "http://127.0.0.1:9/down", timeout: 1s}}}}]
"""


@pytest.fixture
async def api(stack: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, headers=ADMIN, timeout=20) as client:
        yield client


@pytest.fixture
async def ws(db: Connection, workspace: str, api: httpx.AsyncClient) -> str:
    """The test's triggers, each answering (the ordered one's lane declared)."""
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    for name in ("asks", "lane", "loose"):
        await send(api, workspace, name, {"n": -1})
    await eventually(lambda: finished(db, workspace, 3), timeout=15)
    return workspace


async def send(api: httpx.AsyncClient, ws: str, trigger: str, body: Any) -> httpx.Response:
    """One call, retried while the trigger is not routable yet (503 during a rebinding)."""

    async def probe() -> httpx.Response | None:
        answer = await api.post(f"/hooks/{ws}/{trigger}", json=body)
        return answer if answer.status_code in (200, 202) else None

    return await eventually(probe, timeout=15)


async def finished(db: Connection, ws: str, count: int, trigger: str | None = None) -> list[Any] | None:
    rows = await db.fetch(
        "select request->'body'->'n' as n from executions where workspace = $1 and status = 'succeeded'"
        " and ($2::text is null or trigger = $2) order by started_at",
        ws,
        trigger,
    )
    return [r["n"] for r in rows] if len(rows) >= count else None


async def queue(api: httpx.AsyncClient, ws: str, kind: str) -> dict[str, Any] | None:
    found = [q for q in (await api.get("/api/queues", params={"workspace": ws})).json() if q["kind"] == kind]
    return found[0] if found else None


async def test_a_paused_request_response_trigger_answers_503_until_resumed(
    api: httpx.AsyncClient, ws: str
) -> None:
    paused = await api.post(f"/api/workspaces/{ws}/triggers/asks/pause")
    assert paused.json()["paused"] is True

    async def refused() -> httpx.Response | None:
        # A call that reaches an ingress before it has seen the pause, after the dispatcher
        # moved the binding, is held like an async call and waits: give up on it quickly.
        answer = await api.post(f"/hooks/{ws}/asks", timeout=1)
        return answer if answer.status_code == 503 else None

    answer = await eventually(refused, timeout=10)
    assert answer.headers["retry-after"] == "5"
    assert answer.json() == {
        "type": "/problems/trigger-paused",
        "title": "Trigger paused",
        "status": 503,
        "detail": "the trigger is paused; call again once it is resumed",
    }
    assert (await api.post(f"/api/workspaces/{ws}/triggers/asks/resume")).json()["paused"] is False
    assert (await send(api, ws, "asks", {})).text == "answered"


async def test_a_paused_async_trigger_holds_calls_on_the_broker_and_runs_them_on_resume(
    api: httpx.AsyncClient, ws: str, db: Connection
) -> None:
    await api.post(f"/api/workspaces/{ws}/triggers/loose/pause")
    # The pause takes effect once the dispatcher moved the key (a notification round trip);
    # calls before that still run. Probe until one is held: from then on all are.
    probes = 0

    async def holding() -> int | None:
        nonlocal probes
        await send(api, ws, "loose", {"n": 100})
        probes += 1
        held = await queue(api, ws, "held")
        return held["messages"] if held is not None and held["messages"] > 0 else None

    first_held = await eventually(holding)
    for n in range(5):
        assert (await send(api, ws, "loose", {"n": n})).status_code == 202

    async def all_held() -> dict[str, Any] | None:
        held = await queue(api, ws, "held")
        return held if held is not None and held["messages"] == first_held + 5 else None

    held = await eventually(all_held)
    assert (held["consumers"], held["trigger"]) == (0, "loose")
    ran_before = 1 + probes - first_held  # the warm-up call and the probes that beat the pause
    assert await finished(db, ws, ran_before + 1, "loose") is None  # nothing held has run

    resumed = await api.post(f"/api/workspaces/{ws}/triggers/loose/resume")
    assert resumed.json()["paused"] is False
    ran = await eventually(lambda: finished(db, ws, 1 + probes + 5, "loose"), timeout=20)
    assert len(ran) == 1 + probes + 5
    assert sorted(n for n in ran if n != 100) == [-1, 0, 1, 2, 3, 4]

    async def hold_queue_gone() -> bool | None:
        return True if await queue(api, ws, "held") is None else None

    await eventually(hold_queue_gone, timeout=15)


async def test_a_paused_unordered_trigger_stops_retrying_and_retries_again_on_resume(
    api: httpx.AsyncClient, ws: str, db: Connection
) -> None:
    await apply_yaml(db, FAILING.format(ws=ws))
    execution = uuid.UUID((await send(api, ws, "failing", {"n": 1})).json()["execution_id"])

    async def attempts(more_than: int) -> int | None:
        made = await db.fetchval("select attempts from executions where id = $1", execution)
        return made if made is not None and made > more_than else None

    await eventually(lambda: attempts(1))  # failing and retrying through the delay queue
    await api.post(f"/api/workspaces/{ws}/triggers/failing/pause")

    async def parked() -> dict[str, Any] | None:
        held = await queue(api, ws, "held")
        return held if held is not None and held["messages"] == 1 else None

    await eventually(parked, timeout=15)  # the retry came back and was parked, not run
    made = await db.fetchval("select attempts from executions where id = $1", execution)
    await asyncio.sleep(2)  # eight retry periods
    assert await db.fetchval("select attempts from executions where id = $1", execution) == made
    assert (await parked()) is not None

    await api.post(f"/api/workspaces/{ws}/triggers/failing/resume")
    assert await eventually(lambda: attempts(made), timeout=15) > made


async def test_a_deleted_paused_trigger_made_again_is_not_paused(
    api: httpx.AsyncClient, ws: str, db: Connection
) -> None:
    await api.post(f"/api/workspaces/{ws}/triggers/loose/pause")
    assert (await api.delete(f"/api/workspaces/{ws}/triggers/loose")).status_code == 204
    await apply_yaml(db, TRIGGERS.format(ws=ws))
    shown = (await api.get(f"/api/workspaces/{ws}/triggers/loose")).json()
    assert shown["paused"] is False
    await send(api, ws, "loose", {"n": 7})
    ran = await eventually(lambda: finished(db, ws, 2, "loose"), timeout=15)
    assert ran == [-1, 7]


async def test_a_paused_ordered_trigger_keeps_its_calls_in_its_lane_and_runs_them_in_order(
    api: httpx.AsyncClient, ws: str, db: Connection
) -> None:
    await api.post(f"/api/workspaces/{ws}/triggers/lane/pause")

    async def let_go() -> dict[str, Any] | None:
        lane = await queue(api, ws, "ordered")
        return lane if lane is not None and lane["consumers"] == 0 else None

    await eventually(let_go)  # every worker let go of the lane
    for n in range(6):
        assert (await send(api, ws, "lane", {"n": n})).status_code == 202

    async def all_waiting() -> dict[str, Any] | None:
        lane = await queue(api, ws, "ordered")
        return lane if lane is not None and lane["messages"] == 6 else None

    await eventually(all_waiting)
    assert await finished(db, ws, 2, "lane") is None

    await api.post(f"/api/workspaces/{ws}/triggers/lane/resume")
    ran = await eventually(lambda: finished(db, ws, 7, "lane"), timeout=20)
    assert ran == [-1, 0, 1, 2, 3, 4, 5]
