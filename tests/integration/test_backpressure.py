"""Bounded queues: when a trigger's queue is full the caller gets 503 at once, nothing is lost."""

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
  - name: inbox
    auth: {{type: api_key}}
    workflow: [{{id: got, map: "{{{{ request.body }}}}"}}]
"""

BOUND = 3


@pytest.fixture(scope="module")
def bounded_stack(amqp_url: str, database_url: str, log_dir: Path) -> Iterator[Services]:
    """Ingress and dispatcher, no worker, work queues bounded to a few messages."""
    prefix = f"bounded-{uuid.uuid4().hex[:6]}"
    (log_dir / prefix).mkdir()
    env = {"HOOKLINE_WORK_QUEUE_MAX_LENGTH": str(BOUND)}
    with services(
        amqp_url, database_url, log_dir / prefix, workers=0, prefix=prefix, extra_env=env
    ) as running:
        yield running


async def test_a_full_queue_is_503_with_retry_after_and_accepted_calls_are_kept(
    bounded_stack: Services, db: Connection, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    key = (await new_key(db, workspace, "inbox")).key
    url = f"{bounded_stack.base_url}/hooks/{workspace}/inbox"

    async def post(n: int) -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.post(url, json={"n": n}, headers={"X-API-Key": key})

    async def first() -> str | None:
        answer = await post(0)
        return answer.json()["execution_id"] if answer.status_code == 202 else None

    accepted = [await eventually(first)]
    answers = [await post(n) for n in range(1, BOUND + 4)]
    accepted += [a.json()["execution_id"] for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code != 202]
    # A quorum queue refuses publishes once it is *over* its bound: it holds BOUND + 1.
    assert len(accepted) == BOUND + 1
    assert [a.status_code for a in refused] == [503, 503, 503]
    assert [a.status_code for a in answers[-2:]] == [503, 503]
    assert refused[0].headers["retry-after"] == "5"
    assert refused[0].json()["type"] == "/problems/queue-full"

    bounded_stack.start("worker-drain")
    try:

        async def all_recorded() -> bool | None:
            count = await db.fetchval("select count(*) from executions where workspace = $1", workspace)
            return True if count == len(accepted) else None

        await eventually(all_recorded, timeout=30)
        ids = {
            str(r["id"]) for r in await db.fetch("select id from executions where workspace = $1", workspace)
        }
        assert ids == set(accepted)
    finally:
        bounded_stack.stop("worker-drain")
