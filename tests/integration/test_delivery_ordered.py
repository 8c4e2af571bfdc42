"""Ordered delivery: one lane per trigger (or per key partition), strictly in arrival order,
one run at a time, through worker kills and partition-count changes."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.broker.inspection import queue_state
from shared.broker.link import connect_once
from shared.db.lanes import load_layouts
from shared.db.pool import Connection
from shared.wire.topology import LaneLayout
from tests.helpers import apply_yaml, eventually
from tests.integration.calls import (
    Run,
    all_finished,
    delivery_stack,
    never_overlap,
    runs,
    send,
    worker_that_logged,
)
from tests.integration.target import Target
from tests.stack import Services

LANE = """
workspace: {ws}
triggers:
  - name: lane
    auth: {{type: none}}
    ordered: {ordered}
    workflow:
      - id: call
        http: {{url: "{target}/work/{ms}"}}
"""


@pytest.fixture(scope="module")
def ordered_stack(amqp_url: str, database_url: str, log_dir: Path) -> Iterator[Services]:
    with delivery_stack(amqp_url, database_url, log_dir, workers=3) as stack:
        yield stack


async def _ready(stack: Services, url: str) -> None:
    """Until the trigger's lane exists and takes calls (503 before)."""

    async def probe() -> bool | None:
        async with httpx.AsyncClient() as client:
            answer = await client.post(url, json={"seq": -1, "key": "probe"})
        return True if answer.status_code == 202 else None

    await eventually(probe, timeout=20)


@pytest.mark.fault
async def test_an_ordered_lane_keeps_arrival_order_while_its_active_worker_is_killed_twice(
    ordered_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, LANE.format(ws=workspace, ordered="true", target=target.base_url, ms=10))
    url = f"{ordered_stack.base_url}/hooks/{workspace}/lane"
    await _ready(ordered_stack, url)
    async with httpx.AsyncClient(timeout=30) as client:
        for seq in range(500):  # one after the other: arrival order is this order
            await send(client, url, {"seq": seq})
    spare = 4
    for threshold in (120, 300):
        await eventually(lambda n=threshold: _at_least(db, workspace, n), timeout=60)  # type: ignore[misc]
        latest = (await runs(db, workspace))[-1]
        active = await worker_that_logged(ordered_stack, latest.id)
        ordered_stack.stop(active, signal.SIGKILL)  # its in-flight run goes back to the head
        ordered_stack.start(f"worker-{spare}", "--concurrency", "16")
        spare += 1

    done = await all_finished(db, workspace, 501, timeout=120)
    assert [r.body["seq"] for r in done] == list(range(-1, 500)), "execution order is arrival order"
    never_overlap(done)
    assert {r.status for r in done} == {"succeeded"}


async def test_an_ordering_key_keeps_order_per_key_and_runs_keys_in_parallel(
    ordered_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    ordered = '{key: "request.body.key", partitions: 4}'
    await apply_yaml(db, LANE.format(ws=workspace, ordered=ordered, target=target.base_url, ms=40))
    url = f"{ordered_stack.base_url}/hooks/{workspace}/lane"
    await _ready(ordered_stack, url)
    keys = [f"customer-{k}" for k in range(8)]
    async with httpx.AsyncClient(timeout=30) as client:
        for seq in range(15):
            for key in keys:
                await send(client, url, {"seq": seq, "key": key})

    done = await all_finished(db, workspace, 121, timeout=120)
    by_key = _by_key(done)
    for key in keys:
        assert [r.body["seq"] for r in by_key[key]] == list(range(15)), f"order of {key}"
        never_overlap(by_key[key])
    assert _overlapping_keys(done), "different keys must run in parallel"


async def test_changing_the_partition_count_drains_the_old_lanes_before_the_new_ones_run(
    ordered_stack: Services, db: Connection, workspace: str, target: Target, amqp_url: str
) -> None:
    ordered = '{key: "request.body.key", partitions: PARTITIONS}'
    trigger = LANE.format(ws=workspace, ordered=ordered, target=target.base_url, ms=30)
    await apply_yaml(db, trigger.replace("PARTITIONS", "4"))
    url = f"{ordered_stack.base_url}/hooks/{workspace}/lane"
    await _ready(ordered_stack, url)
    keys = [f"k{k}" for k in range(6)]
    async with httpx.AsyncClient(timeout=30) as client:
        for seq in range(20):
            if seq == 10:  # while the 4 old lanes still hold a backlog
                await apply_yaml(db, trigger.replace("PARTITIONS", "2"))
            for key in keys:
                # A call during the switch may meet the moment between unbind and bind: the
                # caller gets 503 + Retry-After and retries, as callers do.
                await send(client, url, {"seq": seq, "key": key}, retry_503=True)

    done = await all_finished(db, workspace, 121, timeout=120)
    by_key = _by_key(done)
    for key in keys:
        assert [r.body["seq"] for r in by_key[key]] == list(range(20)), f"order of {key} across the switch"

    async def only_the_new_layout() -> list[LaneLayout] | None:
        layouts = [x for x in await load_layouts(db) if x.workspace == workspace]
        return layouts if len(layouts) == 1 else None

    [layout] = await eventually(only_the_new_layout, timeout=30)
    assert (layout.generation, layout.partitions, layout.draining) == (2, 2, False)
    prefix = ordered_stack.env["HOOKLINE_AMQP_PREFIX"]
    async with connect_once(amqp_url, "test") as broker:
        old = LaneLayout(workspace, "lane", 1, 4, "request.body.key")

        # A quorum queue's delete-ok can come a moment before a passive declare stops
        # finding it (its Ra members stop asynchronously).
        async def old_queues_gone() -> bool | None:
            states = [await queue_state(broker, q) for q in old.queues(prefix)]
            return True if states == [None] * 4 else None

        await eventually(old_queues_gone, timeout=15)


async def test_an_ordered_trigger_refuses_calls_until_its_queue_exists(
    ordered_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    ordered_stack.stop("dispatcher")
    try:
        await apply_yaml(db, LANE.format(ws=workspace, ordered="true", target=target.base_url, ms=0))
        url = f"{ordered_stack.base_url}/hooks/{workspace}/lane"

        async def refused() -> httpx.Response | None:
            async with httpx.AsyncClient() as client:
                answer = await client.post(url, json={"seq": 0})
            return answer if answer.status_code != 404 else None  # 404 until the ingress knows it

        answer = await eventually(refused, timeout=10)
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "5"
        assert answer.json()["type"] == "/problems/trigger-not-ready"
        assert await runs(db, workspace) == []
    finally:
        ordered_stack.start("dispatcher")
    await _ready(ordered_stack, url)


def _by_key(done: list[Run]) -> dict[str, list[Run]]:
    grouped: dict[str, list[Run]] = {}
    for run in done:
        if run.body["seq"] >= 0:
            grouped.setdefault(run.body["key"], []).append(run)
    return grouped


def _overlapping_keys(done: list[Run]) -> bool:
    for a in done:
        for b in done:
            if (
                a.body["key"] != b.body["key"]
                and a.started_at < b.finished_at
                and b.started_at < a.finished_at
            ):
                return True
    return False


async def _at_least(db: Connection, workspace: str, count: int) -> bool | None:
    return True if len(await runs(db, workspace)) >= count else None
