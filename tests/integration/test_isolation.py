"""Noisy neighbour: a trigger flooded far past its capacity is refused alone; another
trigger's callers are never refused and their calls do not wait behind its backlog."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aio_pika import connect

from shared.broker.inspection import queue_state
from shared.db.pool import Connection
from shared.db.triggers import delete_trigger
from shared.wire import topology
from tests.helpers import apply_yaml, eventually
from tests.integration.calls import all_finished, delivery_stack
from tests.integration.concurrency_target import Recorder, running_recorder
from tests.stack import Services

BOUND = 20
RUN_MS = 1000
# 2 workers x 12 slots a queue (3/4 of --concurrency 16) / 1 s a run: what the noisy trigger runs.
CAPACITY = 2 * 12 * 1000 / RUN_MS

TRIGGERS = """
workspace: {ws}
triggers:
  - name: noisy
    auth: {{type: none}}
    max_queued: {bound}
    idempotency: null
    workflow:
      - id: call
        http: {{url: "{target}/run", query: {{key: noisy, ms: "{ms}"}}}}
  - name: quiet
    auth: {{type: none}}
    idempotency: null
    workflow:
      - id: noted
        map: {{n: "{{{{ request.body.n }}}}"}}
"""


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    with running_recorder() as running:
        yield running


@pytest.fixture(scope="module")
def isolation_stack(amqp_url: str, database_url: str, log_dir: Path) -> Iterator[Services]:
    with delivery_stack(amqp_url, database_url, log_dir, workers=2) as stack:
        yield stack


async def _quiet_calls(client: httpx.AsyncClient, url: str, seconds: float, first: int) -> list[int]:
    """One call every 100 ms for `seconds`; the answers' statuses."""
    statuses = []
    n = first
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        answer = await client.post(url, json={"n": n})
        statuses.append(answer.status_code)
        n += 1
        await asyncio.sleep(0.1)
    return statuses


async def _lag_p99(db: Connection, workspace: str, since: float, until: float) -> float:
    """p99 of accepted -> executed of the quiet trigger's calls received in [since, until], seconds."""
    value = await db.fetchval(
        "select percentile_cont(0.99) within group (order by extract(epoch from finished_at - received_at))"
        " from executions where workspace = $1 and trigger = 'quiet'"
        " and received_at between to_timestamp($2) and to_timestamp($3)",
        workspace,
        since,
        until,
    )
    return float(value)


async def test_a_flooded_trigger_is_refused_alone_and_delays_no_other(
    isolation_stack: Services, db: Connection, workspace: str, recorder: Recorder
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=recorder.base_url, bound=BOUND, ms=RUN_MS))
    noisy = f"{isolation_stack.base_url}/hooks/{workspace}/noisy"
    quiet = f"{isolation_stack.base_url}/hooks/{workspace}/quiet"
    async with httpx.AsyncClient(timeout=30) as client:

        async def routed(url: str) -> bool | None:
            return True if (await client.post(url, json={"n": -1})).status_code == 202 else None

        await eventually(lambda: routed(quiet), timeout=20)
        await eventually(lambda: routed(noisy), timeout=20)
        await all_finished(db, workspace, 2, timeout=20)

        # The quiet trigger alone.
        began = time.time()
        alone = await _quiet_calls(client, quiet, 5, 0)
        alone_window = (began, time.time())

        # Then beside a flood that offers the noisy trigger several times its CAPACITY.
        refusals: list[httpx.Response] = []
        offered = 0
        flooding = True

        async def flood() -> None:
            # 16 callers, 10 calls a second each: ~160/s, several times CAPACITY. Paced, as
            # the bench's flood is: refusals are answered at once, and an unpaced flood from
            # this process would take the test machine's cores from everything on it.
            nonlocal offered
            while flooding:
                due = time.monotonic() + 0.1
                answer = await client.post(noisy, json={"n": 0})
                offered += 1
                if answer.status_code != 202:
                    refusals.append(answer)
                await asyncio.sleep(max(0.0, due - time.monotonic()))

        floods = [asyncio.create_task(flood()) for _ in range(16)]
        try:
            await asyncio.sleep(2)  # its queue is full by now
            began = time.time()
            beside = await _quiet_calls(client, quiet, 6, 1000)
            beside_window = (began, time.time())
        finally:
            flooding = False
            await asyncio.gather(*floods)
        flood_seconds = beside_window[1] - beside_window[0] + 2

    assert set(alone) == {202}
    assert set(beside) == {202}, "the quiet trigger's callers were refused while the other flooded"
    # The flooded trigger: its own bound reached, its callers told when to come back.
    assert refusals, "the noisy trigger was never refused: not flooded"
    assert {r.status_code for r in refusals} == {503}
    assert {r.headers.get("retry-after") for r in refusals} == {"5"}
    assert offered / flood_seconds > 3 * CAPACITY, (
        f"offered {offered / flood_seconds:.0f}/s: not several times capacity"
    )

    count = 1 + len(alone) + len(beside)  # its probe call too
    await all_finished(db, workspace, count, timeout=60, trigger="quiet")
    alone_p99 = await _lag_p99(db, workspace, *alone_window)
    beside_p99 = await _lag_p99(db, workspace, *beside_window)
    print(
        f"quiet trigger lag p99: alone {alone_p99 * 1000:.1f} ms, beside the flood {beside_p99 * 1000:.1f} ms"
    )
    # Its calls never waited for one of the noisy trigger's runs (1 s), let alone its backlog
    # (with one shared queue they waited behind up to BOUND of them: BOUND seconds).
    # How close its lag stays to its lag alone is a speed target, so it is `make bench`'s
    # (scenario noisy_neighbour, within 2x): here the p99 of 60 samples on a shared 2-core
    # machine is one sample, and a CI run once measured 139 ms beside the flood against 16 alone.
    assert beside_p99 < RUN_MS / 1000 / 2

    # The bound is the noisy trigger's own: its queue holds BOUND (+1, quorum queues refuse
    # once over it), the quiet trigger's queue is bounded by the deployment's default.
    prefix = isolation_stack.env["HOOKLINE_AMQP_PREFIX"]
    assert topology.trigger_queue_name(prefix, workspace, "noisy") in isolation_stack.log("worker-1")


async def test_workers_follow_the_registry_a_new_trigger_queue_is_consumed_a_deleted_one_goes(
    isolation_stack: Services, db: Connection, workspace: str, recorder: Recorder
) -> None:
    prefix = isolation_stack.env["HOOKLINE_AMQP_PREFIX"]
    queue = topology.trigger_queue_name(prefix, workspace, "quiet")
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=recorder.base_url, bound=BOUND, ms=0))
    url = f"{isolation_stack.base_url}/hooks/{workspace}/quiet"
    connection = await connect(isolation_stack.env["HOOKLINE_AMQP_URL"])
    try:

        async def consumed_by_both() -> bool | None:
            state = await queue_state(connection, queue)
            return True if state is not None and state.consumers == 2 else None

        await eventually(consumed_by_both, timeout=20)
        async with httpx.AsyncClient() as client:
            assert (await client.post(url, json={"n": 1})).status_code == 202
        await all_finished(db, workspace, 1, timeout=20, trigger="quiet")

        await delete_trigger(db, workspace, "quiet")

        async def gone() -> bool | None:
            return True if await queue_state(connection, queue) is None else None

        # Workers let it go, the dispatcher deletes it once empty and unconsumed.
        await eventually(gone, timeout=30)
        async with httpx.AsyncClient() as client:
            assert (await client.post(url, json={"n": 2})).status_code == 404
    finally:
        await connection.close()
    assert all(
        f"stopped consuming trigger queue {queue}" in isolation_stack.log(f"worker-{i}") for i in (1, 2)
    )


async def test_what_a_deleted_triggers_queue_still_holds_is_moved_and_run_then_the_queue_goes(
    isolation_stack: Services, db: Connection, workspace: str, recorder: Recorder
) -> None:
    # Runs of 1 s, at most 24 at once: 60 calls leave a backlog in the trigger's queue.
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=recorder.base_url, bound=100, ms=RUN_MS))
    url = f"{isolation_stack.base_url}/hooks/{workspace}/noisy"
    prefix = isolation_stack.env["HOOKLINE_AMQP_PREFIX"]
    queue = topology.trigger_queue_name(prefix, workspace, "noisy")
    async with httpx.AsyncClient(timeout=30) as client:

        async def accepted() -> str | None:
            answer = await client.post(url, json={"n": 0})
            return str(answer.json()["execution_id"]) if answer.status_code == 202 else None

        ids = [await eventually(accepted, timeout=20)]
        ids += [await accepted() or "" for _ in range(59)]
    assert all(ids)
    connection = await connect(isolation_stack.env["HOOKLINE_AMQP_URL"])
    try:
        state = await queue_state(connection, queue)
        assert state is not None
        assert state.ready > 0, "no backlog left to move: the case is not exercised"
        await delete_trigger(db, workspace, "noisy")

        async def gone() -> bool | None:
            return True if await queue_state(connection, queue) is None else None

        await eventually(gone, timeout=60)
    finally:
        await connection.close()
    # Every accepted call has its final record: none was lost with the queue.
    done = await all_finished(db, workspace, 60, timeout=60)
    assert {r.id for r in done} == set(ids)
    assert "retired trigger queue emptied into the work queue" in isolation_stack.log("dispatcher")
