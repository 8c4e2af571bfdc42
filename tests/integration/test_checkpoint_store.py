"""Step checkpoints in PostgreSQL: kept and read back whole, a too-large one not kept."""

from __future__ import annotations

import uuid

import httpx

from shared.db.checkpoints import Checkpoint
from shared.db.pool import open_pool
from tests.integration.target import Target
from tests.workflow_runs import StaticResources, invocation, workflow_of
from worker.checkpoints import CheckpointStore
from worker.engine import Workflow


async def test_a_checkpoint_is_read_back_as_it_was_kept(database_url: str) -> None:
    execution_id = str(uuid.uuid4())
    output = {"status": 201, "body": {"id": 7, "name": "Gromit\u0000", "tags": ["a"]}, "none": None}
    async with open_pool(database_url, max_size=2) as pool:
        store = CheckpointStore(pool)
        assert await store.load(execution_id) == {}
        assert await store.save(execution_id, "create", Checkpoint(output, {"id": "create", "n": 1}))
        assert await store.save(execution_id, "create", Checkpoint(output, {"id": "create", "n": 2}))
        assert await store.save(execution_id, "other", Checkpoint(None, {"id": "other"}))
        kept = await store.load(execution_id)
    # Stored as every record is (shared/db/pool.py json_text): U+0000 as U+FFFD, the rest whole.
    assert kept == {
        "create": Checkpoint(
            {**output, "body": {**output["body"], "name": "Gromit\ufffd"}}, {"id": "create", "n": 2}
        ),
        "other": Checkpoint(None, {"id": "other"}),
    }


async def test_an_output_over_the_checkpoint_limit_is_not_kept_and_a_retry_runs_the_step_again(
    database_url: str, target: Target
) -> None:
    async with open_pool(database_url, max_size=2) as pool, httpx.AsyncClient() as client:
        spec = workflow_of(f'- {{id: a, http: {{method: POST, url: "{target.url("/a")}"}}}}').trigger
        workflow = Workflow(spec, StaticResources(client), checkpoints=CheckpointStore(pool, limit=100))
        call = invocation()
        first = await workflow.run(call, 1)
        second = await workflow.run(call, 2, resume=True)
    assert (first.ok, first.steps[0]["checkpointed"]) == (True, False)
    assert (second.ok, second.steps[0].get("resumed", False)) == (True, False)
    assert [p.idempotency_key for p in target.posts_to("/a")] == [f"{call.id}:a"] * 2
