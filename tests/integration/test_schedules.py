"""Schedule triggers on real processes: with two dispatchers each tick runs once, the standby
takes over from a killed leader, and ticks missed while no dispatcher ran follow `catch_up`.

Each test has a database of its own: a schedule's leader is one per database, and the
session's other stacks must not lead (or publish) these ticks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import httpx
import pytest

from shared.db.pool import Connection, connect
from shared.spec.schedule import SCHEDULE_METHOD, tick_execution_id, tick_text
from shared.wire import topology
from shared.wire.messages import Invocation, RequestData, invocation_encoder
from tests.helpers import apply_yaml, eventually
from tests.integration.in_process import private_database
from tests.integration.target import Target
from tests.stack import Services, services

TRIGGER = """
workspace: {ws}
triggers:
  - name: {name}
    auth: {{type: none}}
    methods: []
    schedule: {{every: 2s, catch_up: {catch_up}}}
    workflow:
      - id: hit
        http:
          method: POST
          url: "{target}/ticks/{ws}/{name}"
          json: {{at: "{{{{ request.scheduled_at }}}}", method: "{{{{ request.method }}}}"}}
"""
STEP = timedelta(seconds=2)
LEADING = "schedules: leading"


@dataclass(frozen=True)
class Tick:
    """One scheduled run as recorded."""

    id: str
    at: datetime  # request.scheduled_at
    received: float  # when the dispatcher published it
    status: str
    attempts: int


@pytest.fixture
async def own_database(postgres_server_url: str) -> AsyncIterator[str]:
    async with private_database(postgres_server_url) as url:
        yield url


@pytest.fixture
async def own_db(own_database: str) -> AsyncIterator[Connection]:
    async with connect(own_database) as connection:
        yield connection


@contextmanager
def schedule_stack(amqp_url: str, database_url: str, log_dir: Path) -> Iterator[Services]:
    prefix = f"sc-{uuid.uuid4().hex[:6]}"
    folder = log_dir / prefix
    folder.mkdir()
    with services(amqp_url, database_url, folder, workers=2, prefix=prefix) as stack:
        yield stack


async def ticks(db: Connection, workspace: str, trigger: str) -> list[Tick]:
    """The trigger's finished scheduled runs, by tick."""
    rows = await db.fetch(
        "select id, request->>'scheduled_at' as at, extract(epoch from received_at) as received,"
        " status, attempts from executions where workspace = $1 and trigger = $2"
        " and status in ('succeeded', 'failed', 'dead') order by request->>'scheduled_at'",
        workspace,
        trigger,
    )
    return [
        Tick(
            str(r["id"]),
            datetime.fromisoformat(r["at"].replace("Z", "+00:00")),
            float(r["received"]),
            r["status"],
            r["attempts"],
        )
        for r in rows
    ]


async def ticks_through(db: Connection, workspace: str, trigger: str, moment: datetime) -> list[Tick]:
    """Once a tick at or after `moment` has run: every run of the trigger."""

    async def probe() -> list[Tick] | None:
        done = await ticks(db, workspace, trigger)
        return done if done and done[-1].at >= moment else None

    return await eventually(probe, timeout=60, every=0.2)


async def logged(stack: Services, name: str, text: str) -> bool | None:
    return True if text in stack.log(name) else None


def posts_by_tick(target: Target, workspace: str, trigger: str) -> Counter[str]:
    """How many times the workflow's http step ran for each tick (its side effect)."""
    return Counter(json.loads(p.body)["at"] for p in target.posts_to(f"/ticks/{workspace}/{trigger}"))


def gaps(moments: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive ticks further apart than one step."""
    return [(a, b) for a, b in itertools.pairwise(moments) if b - a != STEP]


async def test_with_two_dispatchers_every_tick_of_every_2s_runs_once(
    own_database: str, own_db: Connection, amqp_url: str, log_dir: Path, target: Target, workspace: str
) -> None:
    with schedule_stack(amqp_url, own_database, log_dir) as stack:
        await eventually(lambda: logged(stack, "dispatcher", LEADING), timeout=30)
        stack.start("dispatcher-2")
        await apply_yaml(
            own_db, TRIGGER.format(ws=workspace, name="beat", catch_up="all", target=target.base_url)
        )

        first = (await ticks_through(own_db, workspace, "beat", datetime.fromtimestamp(0, UTC)))[0]
        done = await ticks_through(own_db, workspace, "beat", first.at + timedelta(seconds=10))

        window = [t for t in done if t.at < first.at + timedelta(seconds=10)]
        assert [t.at for t in window] == [first.at + k * STEP for k in range(5)]
        # On time: about 5 published in any 10 s of the dispatcher's clock.
        published = [t for t in done if t.received < first.received + 10]
        assert 4 <= len(published) <= 6
        assert {(t.status, t.attempts) for t in done} == {("succeeded", 1)}
        # Each tick's side effect happened once (one execution id per tick cannot show it).
        runs = posts_by_tick(target, workspace, "beat")
        assert [runs[t.at.strftime("%Y-%m-%dT%H:%M:%SZ")] for t in done] == [1] * len(done)
        assert {json.loads(p.body)["method"] for p in target.posts_to(f"/ticks/{workspace}/beat")} == {
            "SCHEDULE"
        }
        assert "schedules: standing by" in stack.log("dispatcher-2")
        assert LEADING not in stack.log("dispatcher-2")

        async with httpx.AsyncClient() as client:
            refused = await client.post(f"{stack.base_url}/hooks/{workspace}/beat", json={})
        assert refused.status_code == 405
        assert refused.json()["detail"] == "POST is not allowed here; this trigger runs on its schedule only"


@pytest.mark.fault
async def test_the_standby_dispatcher_takes_over_when_the_leader_is_killed(
    own_database: str, own_db: Connection, amqp_url: str, log_dir: Path, target: Target, workspace: str
) -> None:
    with schedule_stack(amqp_url, own_database, log_dir) as stack:
        await eventually(lambda: logged(stack, "dispatcher", LEADING), timeout=30)
        stack.start("dispatcher-2")
        await apply_yaml(
            own_db, TRIGGER.format(ws=workspace, name="beat", catch_up="all", target=target.base_url)
        )
        await eventually(lambda: _at_least(own_db, workspace, "beat", 2), timeout=30)

        leader = stack.processes.pop("dispatcher")
        leader.send_signal(signal.SIGKILL)
        leader.wait(10)
        killed = datetime.now(UTC)

        await eventually(lambda: logged(stack, "dispatcher-2", LEADING), timeout=30)
        done = await ticks_through(own_db, workspace, "beat", killed + 3 * STEP)
        moments = [t.at for t in done]
        assert gaps(moments) == []  # catch_up: all, so the takeover lost no tick
        assert moments[0] < killed < moments[-1]
        runs = posts_by_tick(target, workspace, "beat")
        assert [runs[t.at.strftime("%Y-%m-%dT%H:%M:%SZ")] for t in done] == [1] * len(done)


async def test_ticks_missed_while_no_dispatcher_runs_follow_catch_up(
    own_database: str, own_db: Connection, amqp_url: str, log_dir: Path, target: Target, workspace: str
) -> None:
    with schedule_stack(amqp_url, own_database, log_dir) as stack:
        for name, catch_up in (("every-tick", "all"), ("latest-only", "one")):
            yaml = TRIGGER.format(ws=workspace, name=name, catch_up=catch_up, target=target.base_url)
            await apply_yaml(own_db, yaml)
        for name in ("every-tick", "latest-only"):
            await eventually(lambda name=name: _at_least(own_db, workspace, name, 1), timeout=30)

        assert stack.stop("dispatcher") == 0
        stopped = datetime.now(UTC)
        await asyncio.sleep(7)  # a gap: at least three ticks come due with no dispatcher
        restarted = datetime.now(UTC)
        stack.start("dispatcher")

        every_tick = await ticks_through(own_db, workspace, "every-tick", restarted + STEP)
        latest_only = await ticks_through(own_db, workspace, "latest-only", restarted + STEP)

        moments = [t.at for t in every_tick]
        assert gaps(moments) == []  # each missed tick ran, late
        assert moments[0] < stopped
        assert moments[-1] > restarted
        [(before, caught_up)] = gaps([t.at for t in latest_only])  # one run for the whole gap
        assert before <= stopped
        assert caught_up >= restarted - STEP
        for name, done in (("every-tick", every_tick), ("latest-only", latest_only)):
            runs = posts_by_tick(target, workspace, name)
            assert [runs[t.at.strftime("%Y-%m-%dT%H:%M:%SZ")] for t in done] == [1] * len(done)
            assert {(t.status, t.attempts) for t in done} == {("succeeded", 1)}


async def test_a_tick_published_twice_runs_once(
    own_database: str, own_db: Connection, amqp_url: str, log_dir: Path, target: Target, workspace: str
) -> None:
    # As a leader that died between the broker's confirm and its commit leaves it: the same
    # tick twice in the trigger's queue, maybe taken by two workers at once.
    with schedule_stack(amqp_url, own_database, log_dir) as stack:
        yaml = TRIGGER.format(ws=workspace, name="rare", catch_up="none", target=target.base_url)
        await apply_yaml(own_db, yaml.replace("every: 2s", "every: 366d"))
        await eventually(lambda: logged(stack, "dispatcher", "topology reconciled: 1 triggers"), timeout=30)
        tick = datetime(2026, 3, 29, 1, tzinfo=UTC)
        invocation = Invocation(
            id=tick_execution_id(workspace, "rare", tick),
            workspace=workspace,
            trigger="rare",
            version=1,
            mode="async",
            received_at=time.time(),
            request=RequestData(
                method=SCHEDULE_METHOD, path=f"/hooks/{workspace}/rare", scheduled_at=tick_text(tick)
            ),
        )
        body = invocation_encoder.encode(invocation)
        connection = await aio_pika.connect(amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            prefix = stack.env["HOOKLINE_AMQP_PREFIX"]
            exchange = await channel.get_exchange(topology.invocations_exchange(prefix), ensure=False)
            for _ in range(2):
                message = aio_pika.Message(body, message_id=invocation.id, delivery_mode=2)
                await exchange.publish(message, routing_key=topology.routing_key(workspace, "rare"))
        finally:
            await connection.close()

        settled = "a copy of this schedule tick has run already"
        await eventually(lambda: _logged_by_a_worker(stack, settled), timeout=30)
        [done] = await ticks_through(own_db, workspace, "rare", tick)
        assert (done.id, done.status, done.attempts) == (invocation.id, "succeeded", 1)
        assert posts_by_tick(target, workspace, "rare") == Counter({"2026-03-29T01:00:00Z": 1})


async def _logged_by_a_worker(stack: Services, text: str) -> bool | None:
    return True if any(text in stack.log(f"worker-{i}") for i in (1, 2)) else None


async def _at_least(db: Connection, workspace: str, trigger: str, count: int) -> bool | None:
    return True if len(await ticks(db, workspace, trigger)) >= count else None
