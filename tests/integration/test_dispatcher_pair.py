"""Two dispatchers on real processes: the survivor of a `kill -9` reconciles a trigger change
within 5 s (the schedules' leader killed; the holder of the reconcile lock killed mid-way
through declaring 60 trigger queues), and two reconciles of the same registry at once leave
one topology, no error.

Reconciling has no leader: both dispatchers follow the registry and each reconciles every
change, one at a time under an advisory lock (shared/db/locks.py RECONCILE), so when one
dies the other has nothing to take over; a killed process's lock ends with its session.
The schedules' ticks do have one (dispatcher/schedules.py), and the dispatcher killed here
is that leader. Each test has a database of its own, so no other stack's dispatcher leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import httpx
import pytest

from dispatcher.reconcile import Reconciler, Topology, desired_topology
from shared.broker.inspection import queue_state
from shared.db import locks
from shared.db.lanes import TriggerShape
from shared.db.pool import Connection, connect
from shared.wire import topology
from shared.wire.topology import LaneLayout
from tests.helpers import apply_yaml, eventually, finished_execution
from tests.integration.in_process import private_database
from tests.integration.target import Target
from tests.stack import Services, services

TRIGGER = """
workspace: {ws}
triggers:
  - name: {name}
    auth: {{type: none}}
    methods: [POST]
    mode: async
    workflow:
      - id: hit
        http: {{method: POST, url: "{target}/pair/{ws}/{name}", json: "{{{{ request.body }}}}"}}
"""
LEADING = "schedules: leading"
RECONCILED = "topology reconciled"
TAKEOVER_SECONDS = 5.0


@pytest.fixture
async def own_database(postgres_server_url: str) -> AsyncIterator[str]:
    async with private_database(postgres_server_url) as url:
        yield url


@pytest.fixture
async def own_db(own_database: str) -> AsyncIterator[Connection]:
    async with connect(own_database) as connection:
        yield connection


def logged(stack: Services, name: str, text: str, times: int = 1) -> bool:
    return stack.log(name).count(text) >= times


async def until_logged(stack: Services, name: str, text: str, times: int = 1) -> None:
    async def probe() -> bool | None:
        assert stack.processes[name].poll() is None, f"{name} exited:\n{stack.log(name)[-3000:]}"
        return True if logged(stack, name, text, times) else None

    await eventually(probe, timeout=30, every=0.1)


@pytest.mark.fault
async def test_the_other_dispatcher_reconciles_a_new_trigger_within_5_s_of_the_leaders_kill_9(
    own_database: str, own_db: Connection, amqp_url: str, log_dir: Path, target: Target, workspace: str
) -> None:
    prefix = f"dp-{uuid.uuid4().hex[:6]}"
    folder = log_dir / prefix
    folder.mkdir()
    with services(amqp_url, own_database, folder, workers=1, prefix=prefix) as stack:
        await until_logged(stack, "dispatcher", LEADING)
        stack.start("dispatcher-2")
        await until_logged(stack, "dispatcher-2", RECONCILED)
        await until_logged(stack, "dispatcher-2", "schedules: standing by")

        leader = stack.processes.pop("dispatcher")
        leader.send_signal(signal.SIGKILL)
        leader.wait(10)
        killed = time.monotonic()
        await apply_yaml(own_db, TRIGGER.format(ws=workspace, name="after-kill", target=target.base_url))

        queue = topology.trigger_queue_name(prefix, workspace, "after-kill")
        url = f"{stack.base_url}/hooks/{workspace}/after-kill"
        connection = await aio_pika.connect(amqp_url)
        async with connection, httpx.AsyncClient(timeout=5) as client:

            async def accepted() -> httpx.Response | None:
                if await queue_state(connection, queue) is None:
                    return None
                response = await client.post(url, json={"n": 1})
                return response if response.status_code == 202 else None

            answer = await eventually(accepted, timeout=TAKEOVER_SECONDS, every=0.1)
            took = time.monotonic() - killed
        assert took < TAKEOVER_SECONDS
        execution = await finished_execution(own_db, answer.json()["execution_id"], timeout=30)
        assert (execution.status, execution.attempts) == ("succeeded", 1)
        assert [p.body for p in target.posts_to(f"/pair/{workspace}/after-kill")] == ['{"n":1}']
        # The survivor did it, and went on to lead the schedules as well.
        assert logged(stack, "dispatcher-2", "topology reconciled: 1 triggers")
        await until_logged(stack, "dispatcher-2", LEADING)


MANY = 60  # triggers created at once: enough quorum queues that a reconcile lasts ~1 s here


async def lock_holder(db: Connection) -> str | None:
    """The application_name of the session holding the reconcile lock, if any."""
    holder: str | None = await db.fetchval(
        "select a.application_name from pg_locks l join pg_stat_activity a using (pid)"
        " where l.locktype = 'advisory' and l.granted and l.classid = 0 and l.objid = $1",
        locks.RECONCILE,
    )
    return holder


@pytest.mark.fault
async def test_a_dispatcher_killed_mid_reconcile_leaves_the_other_to_finish_it_within_5_s(
    own_database: str, own_db: Connection, amqp_url: str, log_dir: Path, target: Target, workspace: str
) -> None:
    prefix = f"dm-{uuid.uuid4().hex[:6]}"
    folder = log_dir / prefix
    folder.mkdir()
    named = {name: f"{own_database}?application_name={name}" for name in ("dispatcher", "dispatcher-2")}
    env = {"HOOKLINE_DATABASE_URL": named["dispatcher"]}
    with services(amqp_url, own_database, folder, workers=1, prefix=prefix, extra_env=env) as stack:
        stack.env["HOOKLINE_DATABASE_URL"] = named["dispatcher-2"]
        stack.start("dispatcher-2")
        stack.env["HOOKLINE_DATABASE_URL"] = own_database
        await until_logged(stack, "dispatcher-2", RECONCILED)
        await until_logged(stack, "dispatcher", RECONCILED)

        names = [f"t{i:02}" for i in range(MANY)]
        triggers = "".join(
            TRIGGER.format(ws=workspace, name=n, target=target.base_url).split("triggers:\n")[1]
            for n in names
        )
        await apply_yaml(own_db, f"workspace: {workspace}\ntriggers:\n{triggers}")
        # Both are woken by the change; kill -9 the one that got the lock, mid-way through.
        holder = await eventually(lambda: lock_holder(own_db), timeout=10, every=0.01)
        victim = stack.processes.pop(holder)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed = time.monotonic()
        survivor = "dispatcher-2" if holder == "dispatcher" else "dispatcher"

        connection = await aio_pika.connect(amqp_url)
        async with connection, httpx.AsyncClient(timeout=5) as client:
            accepted: dict[str, httpx.Response] = {}

            async def every_trigger_accepts() -> bool | None:
                # A trigger answers 202 once its queue exists and its key is bound to it
                # (before that its call comes back unroutable: 503, and nothing is queued).
                for name in names:
                    queue = topology.trigger_queue_name(prefix, workspace, name)
                    if name in accepted or await queue_state(connection, queue) is None:
                        continue
                    answer = await client.post(f"{stack.base_url}/hooks/{workspace}/{name}", json={"n": name})
                    if answer.status_code == 202:
                        accepted[name] = answer
                return True if len(accepted) == MANY else None

            await eventually(every_trigger_accepts, timeout=TAKEOVER_SECONDS, every=0.1)
            took = time.monotonic() - killed
        answers = [accepted[n] for n in names]
        assert [a.status_code for a in answers] == [202] * MANY
        assert took < TAKEOVER_SECONDS
        assert f"topology reconciled: {MANY} triggers" in stack.log(survivor)
        assert f"topology reconciled: {MANY} triggers" not in stack.log(holder)  # killed mid-way
        for answer in answers[-3:]:
            execution = await finished_execution(own_db, answer.json()["execution_id"], timeout=30)
            assert (execution.status, execution.attempts) == ("succeeded", 1)


async def test_two_reconciles_of_the_same_registry_at_once_leave_one_topology(amqp_url: str) -> None:
    # What the advisory lock would keep apart, run together on two connections (as two
    # dispatchers whose lock session were gone): every declare and bind is idempotent.
    prefix = f"twice-{uuid.uuid4().hex[:6]}"
    shapes = [
        TriggerShape("w", "plain", False, None),
        TriggerShape("w", "lane", False, 0),
        TriggerShape("w", "other", False, None),
    ]
    # (Not a partitioned lane: the machine's broker has no consistent-hash exchange plugin.)
    layouts = [LaneLayout("w", "lane", 1, 0, None)]
    desired = desired_topology(shapes, layouts, prefix, 100, 5)
    first, second = await aio_pika.connect(amqp_url), await aio_pika.connect(amqp_url)
    try:
        for _ in range(3):
            await asyncio.gather(
                Reconciler(first, prefix).apply(desired), Reconciler(second, prefix).apply(desired)
            )
        # Each trigger's calls reach its own queues, each once: no binding is missing or doubled.
        counts = await holding(first, prefix, desired)
        assert counts == {
            topology.trigger_queue_name(prefix, "w", "plain"): 30,
            topology.trigger_queue_name(prefix, "w", "other"): 30,
            topology.ordered_queue_name(prefix, "w", "lane"): 30,
        }
        # ...and a third dispatcher's reconcile afterwards finds nothing to fight with.
        await Reconciler(first, prefix).apply(desired)
    finally:
        await second.close()
        await _delete(first, prefix, desired)
        await first.close()


async def holding(
    connection: aio_pika.abc.AbstractConnection, prefix: str, desired: Topology
) -> dict[str, int]:
    """The queues holding messages (and how many) after 30 publishes per trigger."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.get_exchange(topology.invocations_exchange(prefix), ensure=False)
    for trigger in ("plain", "other", "lane"):
        for _ in range(30):
            await exchange.publish(aio_pika.Message(b"x"), routing_key=topology.routing_key("w", trigger))
    await channel.close()
    counts: dict[str, int] = {}
    for queue in _queues(desired):
        state = await eventually(lambda queue=queue: queue_state(connection, queue), timeout=5)
        if state.ready:
            counts[queue] = state.ready
    return counts


def _queues(desired: Topology) -> list[str]:
    lanes = [q.name for lane in desired.lanes for q in lane.queues]
    return [desired.work.name, desired.dead.name, *(q.name for q in desired.triggers), *lanes]


async def _delete(connection: aio_pika.abc.AbstractConnection, prefix: str, desired: Topology) -> None:
    channel = await connection.channel()
    names = [*_queues(desired), *(q.name for q in desired.retries)]
    for name in names:
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await channel.queue_delete(name)
    exchanges = [lane.exchange for lane in desired.lanes if lane.exchange]
    for name in [*exchanges, topology.invocations_exchange(prefix), topology.dead_letter_exchange(prefix)]:
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await channel.exchange_delete(name)
    await channel.close()
