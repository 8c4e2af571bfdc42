"""Bounded queues: when a trigger's queue is full the caller gets 503 at once, nothing is lost."""

from __future__ import annotations

import asyncio
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
    env = {"HOOKLINE_WORK_QUEUE_MAX_LENGTH": str(BOUND), "HOOKLINE_TRIGGER_QUEUE_MAX_LENGTH": str(BOUND)}
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


async def test_repeats_of_a_refused_keyed_call_are_never_accepted_for_it(
    bounded_stack: Services, db: Connection, workspace: str
) -> None:
    # Repeats of one Idempotency-Key sent while the first is still being published: the
    # first is refused (queue full) and releases its claim, so no repeat may be told 202 for
    # a message the broker never took: each waits for the first's outcome, then takes its turn.
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    key = (await new_key(db, workspace, "inbox")).key
    url = f"{bounded_stack.base_url}/hooks/{workspace}/inbox"
    filled: list[str] = []
    told: set[str] = set()  # every execution a caller was told 202 for
    refused_some = False
    async with httpx.AsyncClient(timeout=30) as client:

        async def fill() -> bool | None:
            answer = await client.post(url, json={"fill": True}, headers={"X-API-Key": key})
            if answer.status_code == 202:
                filled.append(answer.json()["execution_id"])
            return True if answer.status_code == 503 else None

        # A quorum queue enforces its bound a little late (it may take one more publish
        # after a refusal), so rounds go on until the broker refused one of the repeats.
        for _ in range(5):
            await eventually(fill, timeout=30)  # the queue is over its bound now
            headers = {"X-API-Key": key, "Idempotency-Key": f"evt-{uuid.uuid4()}"}
            answers = await asyncio.gather(
                *(client.post(url, json={"n": 1}, headers=headers) for _ in range(20))
            )
            assert {a.status_code for a in answers} <= {202, 503}
            # Whatever the broker did, one key means at most one execution for its 202s.
            round_told = {a.json()["execution_id"] for a in answers if a.status_code == 202}
            assert len(round_told) <= 1
            told |= round_told
            if 503 in {a.status_code for a in answers}:
                refused_some = True
                break
    assert refused_some, "the broker never refused a repeat: the case was not exercised"
    bounded_stack.start("worker-drain-2")
    try:

        async def drained() -> bool | None:
            count = await db.fetchval(
                "select count(*) from executions where workspace = $1 and status = 'succeeded'", workspace
            )
            return True if count == len(filled) + len(told) else None

        await eventually(drained, timeout=30)
    finally:
        bounded_stack.stop("worker-drain-2")
    ran = await db.fetch(
        "select id from executions where workspace = $1 and request->'body'->'n' is not null", workspace
    )
    assert {str(r["id"]) for r in ran} == told, "a caller was told 202 for a call that never ran"
