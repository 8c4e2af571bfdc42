"""Step checkpoints in the engine: a resumed run reuses what its effect steps did."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from shared.db.checkpoints import Checkpoint
from shared.spec.steps import SqlQuery
from tests.integration.target import Target, running_target
from tests.workflow_runs import StaticResources, invocation, workflow_of
from worker.engine import Workflow


class Kept:
    """Checkpoints in memory, as CheckpointStore keeps them in PostgreSQL."""

    def __init__(self) -> None:
        self.saved: dict[str, dict[str, Checkpoint]] = {}
        self.loads = 0

    async def load(self, execution_id: str) -> dict[str, Checkpoint]:
        self.loads += 1
        return dict(self.saved.get(execution_id, {}))

    async def save(self, execution_id: str, step_id: str, checkpoint: Checkpoint) -> bool:
        self.saved.setdefault(execution_id, {})[step_id] = checkpoint
        return True


@pytest.fixture
def target() -> Iterator[Target]:
    with running_target() as running:
        yield running


@pytest.fixture
async def resources() -> AsyncIterator[StaticResources]:
    async with httpx.AsyncClient() as client:
        yield StaticResources(client)


async def test_a_resumed_run_does_not_repeat_a_post_that_succeeded_and_recomputes_pure_steps(
    target: Target, resources: StaticResources
) -> None:
    kept = Kept()
    workflow = workflow_of(
        f"""
        - id: a
          http: {{method: POST, url: "{target.url("/a")}", json: {{n: "{{{{ execution.attempt }}}}"}}}}
        - id: seen
          map: {{attempt: "{{{{ execution.attempt }}}}", a: "{{{{ steps.a.output.body.call }}}}"}}
        - id: b
          http: {{method: POST, url: "{target.url("/b")}"}}
        """,
        resources,
    )
    workflow = Workflow(workflow.trigger, resources, checkpoints=kept)  # as WorkflowCache does
    target.fail_times["/b"] = 1
    call = invocation()
    first = await workflow.run(call, 1)
    assert (first.ok, [r["status"] for r in first.steps]) == (False, ["succeeded", "succeeded", "failed"])
    assert set(kept.saved[call.id]) == {"a"}  # only what succeeded, and only effect steps
    second = await workflow.run(call, 2, resume=True)
    assert second.ok, second.error
    assert [(p.path, p.idempotency_key) for p in target.posts] == [
        ("/a", f"{call.id}:a"),
        ("/b", f"{call.id}:b"),
        ("/b", f"{call.id}:b"),
    ]
    assert [(r["id"], r["status"], r.get("resumed", False)) for r in second.steps] == [
        ("a", "succeeded", True),
        ("seen", "succeeded", False),
        ("b", "succeeded", False),
    ]
    assert second.steps[0]["output"]["body"] == {"path": "/a", "call": 1}
    assert second.steps[1]["output"] == {"attempt": 2, "a": 1}  # recomputed, with a's output
    assert set(kept.saved[call.id]) == {"a", "b"}


async def test_a_workflow_without_effect_steps_never_reads_or_writes_a_checkpoint(
    target: Target, resources: StaticResources
) -> None:
    kept = Kept()
    workflow = workflow_of(
        f"""
        - id: look
          http: {{url: "{target.url("/work/1")}"}}
        - id: shape
          map: "{{{{ steps.look.output.body }}}}"
        """,
        resources,
    )
    pure = Workflow(workflow.trigger, resources, checkpoints=kept)
    outcome = await pure.run(invocation(), 2, resume=True)
    assert outcome.ok, outcome.error
    assert (kept.loads, kept.saved) == (0, {})


@pytest.mark.parametrize(
    ("query", "writes"),
    [
        ("select * from stock where sku = $1", False),
        ("  (SELECT 1)", False),
        ("with x as (select 1) select * from x", False),
        ("with x as (delete from t returning *) select * from x", True),
        ("select nextval('s')", True),
        ("insert into t values ($1)", True),
        ("update t set a = 1", True),
        ("call refresh()", True),
        ("-- a comment first\nselect 1", True),
    ],
)
def test_a_sql_step_has_effects_unless_it_is_a_plain_read(query: str, writes: bool) -> None:
    assert SqlQuery(connection="erp", query=query).writes is writes
    assert SqlQuery(connection="erp", query=query, effects=not writes).writes is not writes
