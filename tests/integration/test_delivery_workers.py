"""Unordered delivery with several worker processes: every call runs once, a killed or
stopped worker loses nothing, and its messages are run by the others."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest

from shared.db.pool import Connection
from shared.wire import topology
from shared.wire.messages import Invocation, RequestData, invocation_encoder
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.integration.calls import all_finished, delivery_stack, runs, send_many
from tests.integration.target import Target
from tests.stack import Services

TRIGGERS = """
workspace: {ws}
triggers:
  - name: inbox
    auth: {{type: none}}
    workflow:
      - id: got
        map: {{n: "{{{{ request.body.n }}}}"}}
  - name: slow
    auth: {{type: none}}
    workflow:
      - id: call
        http: {{url: "{target}/work/{ms}"}}
"""


@pytest.fixture(scope="module")
def workers_stack(amqp_url: str, database_url: str, log_dir: Path) -> Iterator[Services]:
    with delivery_stack(amqp_url, database_url, log_dir, workers=3) as stack:
        yield stack


async def test_two_thousand_calls_with_three_workers_each_run_exactly_once(
    workers_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url, ms=0))
    url = f"{workers_stack.base_url}/hooks/{workspace}/inbox"
    await eventually(lambda: _accepts(url), timeout=10)

    ids = await send_many(url, [{"n": n} for n in range(2000)])

    done = await all_finished(db, workspace, 2001, timeout=120)  # the probe call too
    by_id = {r.id: r for r in done}
    assert set(ids) <= by_id.keys()
    assert sorted(by_id[i].body["n"] for i in ids) == list(range(2000))
    assert {r.status for r in done} == {"succeeded"}
    assert {r.attempts for r in done} == {1}, "no fault happened, so nothing may run twice"
    # All three workers took a share.
    assert all("execution succeeded" in workers_stack.log(f"worker-{i}") for i in (1, 2, 3))


@pytest.mark.fault
async def test_a_worker_killed_mid_run_loses_nothing_its_messages_run_elsewhere(
    workers_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url, ms=300))
    url = f"{workers_stack.base_url}/hooks/{workspace}/slow"
    await eventually(lambda: _accepts(url), timeout=10)
    await all_finished(db, workspace, 1, timeout=10)

    ids = await send_many(url, [{"n": n} for n in range(400)])
    await eventually(lambda: _at_least(db, workspace, 60), timeout=60)
    victim = workers_stack.processes["worker-1"]
    victim.send_signal(signal.SIGKILL)  # 16 runs in flight, unacknowledged
    victim.wait(10)
    workers_stack.processes.pop("worker-1")
    try:
        done = await all_finished(db, workspace, 401, timeout=120)
    finally:
        workers_stack.start("worker-1", "--concurrency", "16")
    assert set(ids) <= {r.id for r in done}
    assert {r.status for r in done} == {"succeeded"}
    redelivered = [r for r in done if r.attempts == 2]
    assert redelivered, "the killed worker held runs in flight; they must have run again"
    assert max(r.attempts for r in done) == 2


@pytest.mark.fault
async def test_sigterm_lets_in_flight_runs_finish_then_the_worker_exits(
    workers_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url, ms=1500))
    url = f"{workers_stack.base_url}/hooks/{workspace}/slow"
    calls_before = target.calls
    await eventually(lambda: _accepts(url), timeout=10)  # one call accepted (202): 61 in all
    # worker-2 alone runs them, so that it surely holds runs in flight when it is stopped
    # (with three, the others' prefetch may take every call of the trigger).
    others = ("worker-1", "worker-3")
    for name in others:
        workers_stack.stop(name, signal.SIGTERM, timeout=30)  # one still starting dies of it: fine
    try:
        ids = await send_many(url, [{"n": n} for n in range(60)])
        await eventually(lambda: _true(target.calls - calls_before >= 21), timeout=30)

        started = time.monotonic()
        code = workers_stack.stop("worker-2", signal.SIGTERM, timeout=30)
        stopped_in = time.monotonic() - started
        try:
            assert code == 0
            assert stopped_in < 5, "runs take 1.5 s: the worker waits for them, and no longer"
            assert "waiting for" in workers_stack.log("worker-2")
        finally:
            workers_stack.start("worker-2", "--concurrency", "16")
    finally:
        for name in others:
            workers_stack.start(name, "--concurrency", "16")
    done = await all_finished(db, workspace, 61, timeout=60)
    assert set(ids) <= {r.id for r in done}
    assert {r.status for r in done} == {"succeeded"}
    # In-flight runs finish before the exit: none runs twice, so the target saw each call once.
    # (A call that reached the worker after the stop began is handed back unrun; the broker
    # counts that as a delivery, so its record may say attempt 2: the target's count is the proof.)
    await eventually(lambda: _true(target.calls - calls_before >= 61), timeout=10)
    assert target.calls - calls_before == 61


async def test_a_redelivery_of_a_run_already_recorded_is_settled_without_a_second_run(
    workers_stack: Services, db: Connection, workspace: str, target: Target
) -> None:
    # A worker that dies after committing a run's record but before its ack: the broker
    # gives the message to another worker with `x-delivery-count` set. That one must settle
    # it as recorded, not call the target (or answer a caller) a second time. The broker's
    # own redelivery is simulated by publishing the same message again with that header.
    await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url, ms=0))
    url = f"{workers_stack.base_url}/hooks/{workspace}/slow"
    await eventually(lambda: _accepts(url), timeout=10)
    invocation = Invocation(
        id=str(uuid.uuid4()),
        workspace=workspace,
        trigger="slow",
        version=int(await db.fetchval("select version from triggers where workspace = $1", workspace)),
        mode="async",
        received_at=time.time(),
        request=RequestData(method="POST", path=f"/hooks/{workspace}/slow", body_kind="json", body={"n": 1}),
    )
    body = invocation_encoder.encode(invocation)
    prefix = workers_stack.env["HOOKLINE_AMQP_PREFIX"]
    connection = await aio_pika.connect(workers_stack.env["HOOKLINE_AMQP_URL"])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.invocations_exchange(prefix))
        key = topology.routing_key(workspace, "slow")
        await exchange.publish(aio_pika.Message(body, message_id=invocation.id), routing_key=key)
        first = await finished_execution(db, invocation.id)
        assert first.status == "succeeded"
        calls_after_first = target.calls
        again = aio_pika.Message(body, message_id=invocation.id, headers={"x-delivery-count": 1})
        await exchange.publish(again, routing_key=key)

        def settled() -> bool:
            return any(
                invocation.id in line and "settled without a second run" in line
                for name in workers_stack.processes
                if name.startswith("worker")
                for line in workers_stack.log(name).splitlines()
            )

        await eventually(lambda: _true(settled()), timeout=20)
    assert target.calls == calls_after_first, "the target was called a second time"
    record = await finished_execution(db, invocation.id)
    assert (record.status, record.attempts) == ("succeeded", 1)


async def _accepts(url: str) -> bool | None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, json={"n": -1})
    return True if answer.status_code == 202 else None


async def _at_least(db: Connection, workspace: str, count: int) -> bool | None:
    finished = [r for r in await runs(db, workspace) if r.status == "succeeded"]
    return True if len(finished) >= count else None


async def _true(value: bool) -> bool | None:
    return True if value else None
