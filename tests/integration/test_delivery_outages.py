"""Outages of the servers themselves, on private servers this module starts and stops:
queued messages survive a broker restart, and a database outage loses nothing."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.broker.inspection import queue_state
from shared.broker.link import connect_once
from shared.db.migrate import migrate
from shared.db.pool import Connection, connect
from shared.devstack.localservers import LocalPostgres, LocalRabbitMQ
from shared.wire import topology
from tests.helpers import apply_yaml, eventually
from tests.integration.calls import all_finished, delivery_stack, finished, runs, send_many
from tests.integration.target import Target

TRIGGERS = """
workspace: {ws}
triggers:
  - name: slow
    auth: {{type: none}}
    workflow:
      - id: call
        http: {{url: "{target}/work/20"}}
"""


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hookline-delivery-outages-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.fault
async def test_a_thousand_queued_messages_all_run_after_a_broker_restart(
    folder: Path, database_url: str, log_dir: Path, workspace: str, target: Target
) -> None:
    broker = LocalRabbitMQ(folder / "rabbitmq")
    broker.start()
    env = {"HOOKLINE_PUBLISH_TIMEOUT": "1"}
    try:
        with delivery_stack(broker.url, database_url, log_dir, workers=0, env=env) as stack:
            async with connect(database_url) as db:
                await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
            url = f"{stack.base_url}/hooks/{workspace}/slow"
            await eventually(lambda: _status(url, 202), timeout=20)  # one call, queued
            ids = await send_many(url, [{"n": n} for n in range(1000)])
            work = topology.trigger_queue_name(stack.env["HOOKLINE_AMQP_PREFIX"], workspace, "slow")
            async with connect_once(broker.url, "test") as amqp:
                state = await queue_state(amqp, work)
            assert state is not None
            assert state.ready == 1001

            stack.start("worker-1", "--concurrency", "4")  # slowly, so most stay queued
            async with connect(database_url) as db:
                await eventually(lambda: _at_least(db, workspace, 100), timeout=60)
            broker.stop()
            started = time.monotonic()
            assert await _status(url, 503)
            assert time.monotonic() - started < 2, "refused at once while the broker is down"
            broker.start()
            await eventually(lambda: _status(url, 202), timeout=60)  # the ingress recovered by itself
            stack.start("worker-2", "--concurrency", "16")
            stack.start("worker-3", "--concurrency", "16")
            async with connect(database_url) as db:
                # A call refused while the broker came back may still have been queued: wait
                # for every accepted one rather than for an exact count.
                done = await finished(db, workspace, ids, timeout=120)
    finally:
        broker.stop()
    assert set(ids) <= {r.id for r in done}
    assert {r.status for r in done} == {"succeeded"}
    # Runs in flight when the broker stopped could not be acked: they ran again, once.
    assert max(r.attempts for r in done) <= 2


@pytest.mark.fault
async def test_a_database_outage_during_a_burst_loses_nothing(
    folder: Path, amqp_url: str, log_dir: Path, workspace: str, target: Target
) -> None:
    postgres = LocalPostgres(folder / "postgres", fast=True)
    database_url = postgres.start()
    try:
        async with connect(database_url) as db:
            await migrate(db)
            await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
        with delivery_stack(amqp_url, database_url, log_dir, workers=3) as stack:
            url = f"{stack.base_url}/hooks/{workspace}/slow"
            await eventually(lambda: _status(url, 202), timeout=20)
            # Calls without an Idempotency-Key: keys are checked in PostgreSQL (a keyed call
            # is refused while it is away, which test_trigger_contract covers).
            bodies = [{"n": n} for n in range(600)]
            first = asyncio.create_task(send_many(url, bodies[:300], concurrency=8, idempotent=False))
            async with connect(database_url) as db:
                await eventually(lambda: _at_least(db, workspace, 50), timeout=60)
            postgres.stop()
            down_at = time.monotonic()
            # The ingress needs no database per call: the burst goes on being accepted.
            second = await send_many(url, bodies[300:], concurrency=8, idempotent=False)
            # A keyed call cannot be checked against earlier ones: refused, honestly, and
            # never run.
            async with httpx.AsyncClient(timeout=10) as client:
                keyed = await client.post(url, json={"n": -2}, headers={"Idempotency-Key": "while-down"})
            assert keyed.status_code == 503, keyed.text
            assert keyed.json()["type"].endswith("/database-unavailable")
            assert keyed.headers["Retry-After"]
            ids = [*await first, *second]
            # Every worker now holds runs it cannot record. One of them dies: had it acked any
            # of them before the commit, those would be lost for good.
            stack.stop("worker-1", signal.SIGKILL, timeout=10)
            await eventually(lambda: _true(time.monotonic() - down_at >= 10), timeout=30)
            postgres.start()
            async with connect(database_url) as db:
                done = await all_finished(db, workspace, 601, timeout=120)
                assert any("cannot record" in stack.log(f"worker-{i}") for i in (2, 3))
    finally:
        postgres.stop()
    assert set(ids) <= {r.id for r in done}
    assert {r.status for r in done} == {"succeeded"}
    # The killed worker's unrecorded runs were delivered again and run once more; nothing else
    # ran twice (the others waited the outage out and recorded their first run).
    assert {r.attempts for r in done} == {1, 2}, "the killed worker's runs must have come back"


async def _status(url: str, status: int) -> bool | None:
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(url, json={"n": -1})
    except httpx.TransportError:
        return None
    return True if answer.status_code == status else None


async def _at_least(db: Connection, workspace: str, count: int) -> bool | None:
    succeeded = [r for r in await runs(db, workspace) if r.status == "succeeded"]
    return True if len(succeeded) >= count else None


async def _true(value: bool) -> bool | None:
    return True if value else None
