"""A worker host cut off mid-run (issue 18, must-show 4): worker A runs in a network namespace
of its own, joined to the rest by one veth; its link goes down while it holds runs.

The broker notices at its heartbeat timeout and hands A's unacknowledged messages to worker
B; when the link is back, A's late writes change no record (an older run never overwrites a
newer one), and A connects again and consumes. Private RabbitMQ and PostgreSQL, listening on
loopback and on the veth's root-side address; ingress, dispatcher and B in the root namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.db.migrate import migrate
from shared.db.pool import Connection, connect
from shared.devstack.localservers import LocalPostgres, LocalRabbitMQ
from tests.helpers import apply_yaml, eventually
from tests.integration.calls import finished, runs, send_many
from tests.integration.target import Target, running_target
from tests.netns import Host, isolated_host, unavailable_reason
from tests.servers import traversable_tmp_dir
from tests.stack import ROOT, Services, services

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]

HEARTBEAT = 2  # seconds (HOOKLINE_HEARTBEAT): the broker gives up on a silent peer after ~2 of them
RUN_MS = 1500  # each call holds the target this long, so A surely holds runs when the link goes
CONCURRENCY = 6  # each worker's prefetch: at most this many runs in flight per worker
CALLS = 36
STEP_TIMEOUT = 5  # seconds: A's runs time out while it is cut off, and A retries them (or would)
CUT_SECONDS = 10  # the link stays down at least this long (longer if B needs it)

TRIGGER = """
workspace: {ws}
triggers:
  - name: slow
    auth: {{type: none}}
    workflow:
      - id: call
        http:
          method: POST
          url: "{target}/slow/{ms}"
          timeout: {timeout}s
          json: {{call: "{{{{ execution.id }}}}", n: "{{{{ request.body.n }}}}"}}
"""


@dataclass
class Cluster:
    """The test's hosts: the stack in the root namespace, worker A in `host`."""

    stack: Services
    host: Host
    target: Target
    database_url: str
    worker_a: subprocess.Popen[bytes]
    broker: LocalRabbitMQ


@pytest.fixture
def cluster(log_dir: Path) -> Iterator[Cluster]:
    """Private servers reachable from the namespace, the stack, and A started in the namespace."""
    if (reason := unavailable_reason()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"network namespaces are needed here: {reason}")
        pytest.skip(f"network namespaces are needed here: {reason}")
    with ExitStack() as cleanup:
        host = cleanup.enter_context(isolated_host("worker-a"))
        folder = cleanup.enter_context(traversable_tmp_dir("hookline-netns-"))
        broker = LocalRabbitMQ(folder / "rabbitmq", listen=[host.root_address])
        amqp_url = cleanup.enter_context(broker)
        # `guest` may connect from loopback only: A, from its namespace, is a user of its own.
        password = secrets.token_urlsafe(16)
        broker.ctl("add_user", "worker-a", password)
        broker.ctl("set_permissions", "-p", "/", "worker-a", ".*", ".*", ".*")
        database = LocalPostgres(folder / "postgres", fast=True, listen=[f"{host.root_address}/30"])
        database_url = cleanup.enter_context(database)
        asyncio.run(_migrate(database_url))
        target = cleanup.enter_context(running_target(host.root_address))
        env = {"HOOKLINE_HEARTBEAT": str(HEARTBEAT)}
        prefix = f"ns-{uuid.uuid4().hex[:6]}"
        logs = log_dir / prefix
        logs.mkdir()
        stack = cleanup.enter_context(
            services(amqp_url, database_url, logs, workers=1, prefix=prefix, extra_env=env)
        )
        # worker-1 is B. A: the same worker, inside the namespace, through the veth address.
        a_env = {
            **stack.env,
            "HOOKLINE_AMQP_URL": f"amqp://worker-a:{password}@{host.root_address}:{broker.port}/",
            "HOOKLINE_DATABASE_URL": database_url.replace("127.0.0.1", host.root_address),
        }
        with (logs / "worker-a.log").open("ab") as log:
            worker_a = subprocess.Popen(
                host.command([sys.executable, "-m", "worker", "--concurrency", str(CONCURRENCY)]),
                env=a_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        stack.processes["worker-a"] = worker_a  # stopped by pid with the others
        yield Cluster(stack, host, target, database_url, worker_a, broker)


async def _migrate(url: str) -> None:
    async with connect(url) as connection:
        await migrate(connection)


async def test_a_worker_cut_off_mid_run_has_its_runs_done_elsewhere_and_records_nothing_twice(
    cluster: Cluster, workspace: str
) -> None:
    host, target = cluster.host, cluster.target
    async with connect(cluster.database_url) as db:
        await apply_yaml(
            db, TRIGGER.format(ws=workspace, target=target.base_url, ms=RUN_MS, timeout=STEP_TIMEOUT)
        )
        url = f"{cluster.stack.base_url}/hooks/{workspace}/slow"
        await eventually(lambda: _accepts(url), timeout=20)
        await _ready(db, cluster.worker_a.pid, since=0, timeout=30)

        ids = await send_many(url, [{"n": n} for n in range(CALLS)], concurrency=CALLS)
        # A is mid-run: its first calls have reached the target.
        await eventually(lambda: _true(bool(_calls_from(target, host.address))), timeout=20)
        host.cut()
        cut_at, cut_wall = time.monotonic(), time.time()
        try:
            # B runs what A held once the broker gives up on A (heartbeat timeout).
            done = await finished(db, workspace, ids, timeout=90)
            redelivered = [r for r in done if r.attempts > 1]
            first_redelivered = await _first_redelivery_seconds(db, workspace, cut_wall)
            taken_over = time.monotonic() - cut_at
            # What A sent before the cut has arrived by now (a request on the wire as the
            # link went down may arrive a moment later); nothing more may while it is down.
            held = _calls_from(target, host.address)
            # A fault of a fixed length, longer than a step's timeout: A's runs end while cut off.
            await asyncio.sleep(max(0.0, CUT_SECONDS - taken_over))
            assert not _calls_from(target, host.address) - held, "A reached the target while cut off"
        finally:
            host.restore()
        restored_at = time.monotonic()

        # Back: A connects again and says it is ready; its runs of the cut-off time end
        # (their records written, the deliveries given up as the broker's), then it consumes.
        await _ready(db, cluster.worker_a.pid, since=time.time(), timeout=60)
        await eventually(lambda: _consuming_from(cluster.broker, host.address), timeout=90, every=0.5)
        reconnected = time.monotonic() - restored_at
        # (A's runs that reached the target; a delivery still on the wire at the cut never
        # reached A, and the broker counts it as A's all the same).
        await eventually(lambda: _ended(cluster.stack, held), timeout=60)
        after = await send_many(url, [{"n": n} for n in range(CALLS, 2 * CALLS)], concurrency=CALLS)
        await finished(db, workspace, after, timeout=90)
        assert _calls_from(target, host.address) - held, "A took no call after it came back"
        # Nothing left anywhere (a retry of a run A held would wait in a delay queue).
        await eventually(lambda: _drained(cluster.broker), timeout=60, every=0.5)

        final = {r.id: r for r in await runs(db, workspace)}

    every = ids + after
    assert set(every) <= final.keys()
    assert len(final) == len(every) + 1  # and the probe call: one record per accepted call
    assert {final[i].status for i in every} == {"succeeded"}
    assert redelivered, "A held runs when its link went down: they must show as redelivered"
    # Nothing A wrote late changed a record: each is as it was before the link came back.
    assert [final[r.id] for r in done] == done, "a record changed after A came back"
    assert max(r.attempts for r in final.values()) == 2
    assert {r.attempts for i, r in final.items() if i in after} == {1}
    # At the target: every call at least once; the ones A had begun, twice (at least once).
    at_target = Counter(_call_ids(target))
    assert set(every) <= at_target.keys()
    twice = sorted(i for i in every if at_target[i] > 1)
    assert set(twice) <= {r.id for r in redelivered}
    assert max(at_target[i] for i in every) <= 2
    print(
        f"\ncut off: broker handed A's runs to B after {first_redelivered:.1f} s (first redelivered"
        f" run recorded), all {CALLS} done {taken_over:.1f} s after the cut; {len(redelivered)} runs"
        f" redelivered, {len(twice)} of them reached the target twice; A consuming again"
        f" {reconnected:.1f} s after the link came back"
    )


def _calls_from(target: Target, address: str) -> set[str]:
    with target.lock:
        return {_call_id(p.body) for p in target.posts if p.client == address}


def _call_ids(target: Target) -> list[str]:
    with target.lock:
        return [_call_id(p.body) for p in target.posts if p.path.startswith("/slow/")]


def _call_id(body: str) -> str:
    return str(json.loads(body)["call"])


async def _first_redelivery_seconds(db: Connection, workspace: str, cut_wall: float) -> float:
    """Seconds from the cut to the start of the first run the broker handed over."""
    started = await db.fetchval(
        "select extract(epoch from min(started_at)) from executions where workspace = $1 and attempts > 1",
        workspace,
    )
    assert started is not None
    return float(started) - cut_wall


async def _ready(db: Connection, pid: int, since: float, timeout: float) -> None:
    """Until worker `pid`'s heartbeat row says ready, renewed after `since` (UNIX seconds)."""

    async def probe() -> bool | None:
        ready = await db.fetchval(
            "select ready from service_heartbeats where instance like $1 and seen_at > to_timestamp($2)",
            f"%:{pid}",
            since,
        )
        return True if ready else None

    await eventually(probe, timeout=timeout, every=0.5)


async def _ended(stack: Services, ids: set[str]) -> bool | None:
    """True once worker A logged, for each of `ids`, the record of its run (its late write)."""
    ended = {
        record.get("execution_id")
        for line in stack.log("worker-a").splitlines()
        if line.startswith("{") and (record := json.loads(line)).get("msg", "").startswith("execution ")
    }
    return True if ids <= ended else None


async def _consuming_from(broker: LocalRabbitMQ, address: str) -> bool | None:
    """True when the broker has a channel from `address` with a consumer on it."""
    listed = await asyncio.to_thread(
        broker.ctl, "list_channels", "-q", "--no-table-headers", "name", "consumer_count"
    )
    for line in listed.splitlines():
        name, _, consumers = line.rpartition("\t")
        if name.startswith(f"{address}:") and consumers.strip().isdigit() and int(consumers) > 0:
            return True
    return None


async def _drained(broker: LocalRabbitMQ) -> bool | None:
    """True when no queue of the broker holds a message, ready or unacknowledged."""
    listed = await asyncio.to_thread(broker.ctl, "list_queues", "-q", "--no-table-headers", "messages")
    return True if all(int(n) == 0 for n in listed.split()) else None


async def _accepts(url: str) -> bool | None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, json={"n": -1})
    return True if answer.status_code == 202 else None


async def _true(value: bool) -> bool | None:
    return True if value else None
