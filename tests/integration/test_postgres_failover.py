"""PostgreSQL failover under load: the primary dies mid-burst, its synchronous standby is
promoted, and every service (ingress, dispatcher, two workers) finds the new primary through
the multi-host HOOKLINE_DATABASE_URL on its own, with nothing lost and nothing run twice."""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared.db.migrate import migrate
from shared.db.pool import Connection, connect
from shared.devstack.localservers.standby import LocalPostgresPair
from tests.helpers import apply_yaml, eventually
from tests.integration.calls import delivery_stack
from tests.integration.target import Target
from worker.step_databases import (
    StepDatabaseRefused,
    check_step_database,
    connect_arguments,
    database_identity,
)

TRIGGERS = """
workspace: {ws}
triggers:
  - name: effect
    auth: {{type: none}}
    workflow:
      - id: post
        http: {{method: POST, url: "{target}/{ws}/effect", json: {{call: "{{{{ execution.id }}}}"}}}}
"""
LATER = """
workspace: {ws}
triggers:
  - name: after-failover
    auth: {{type: none}}
    workflow:
      - id: post
        http: {{method: POST, url: "{target}/{ws}/after", json: {{call: "{{{{ execution.id }}}}"}}}}
  - name: ticking
    auth: {{type: none}}
    methods: []
    schedule: {{every: 1s, catch_up: none}}
    workflow:
      - id: post
        http: {{method: POST, url: "{target}/{ws}/tick", json: {{call: "{{{{ request.scheduled_at }}}}"}}}}
"""


@dataclass(frozen=True)
class Answer:
    """One call of the burst as its caller saw it."""

    at: float
    status: int
    execution_id: str | None


@pytest.fixture
def pair() -> Iterator[LocalPostgresPair]:
    folder = Path(tempfile.mkdtemp(prefix="hookline-pg-failover-"))
    folder.chmod(0o755)
    servers = LocalPostgresPair(folder)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def migrated(pair: LocalPostgresPair) -> str:
    async with connect(pair.url) as db:
        await migrate(db)
    return pair.url


async def burst(url: str, answers: list[Answer], stop: asyncio.Event, concurrency: int = 8) -> None:
    """Async calls `concurrency` at a time until `stop`; each answer kept, none retried."""
    limits = httpx.Limits(max_connections=concurrency, keepalive_expiry=2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def caller(n: int) -> None:
            while not stop.is_set():
                answer = await client.post(url, json={"caller": n})
                execution = answer.json().get("execution_id") if answer.status_code == 202 else None
                assert answer.status_code in (202, 503), answer.text
                answers.append(Answer(time.monotonic(), answer.status_code, execution))

        await asyncio.gather(*(caller(n) for n in range(concurrency)))


async def recorded(db: Connection, workspace: str) -> dict[str, str]:
    rows = await db.fetch("select id::text, status from executions where workspace = $1", workspace)
    return {r["id"]: r["status"] for r in rows}


def effects(target: Target, path: str) -> collections.Counter[str]:
    """How many times the target saw each call's side effect."""
    return collections.Counter(json.loads(p.body)["call"] for p in target.posts_to(path))


@pytest.mark.fault
@pytest.mark.parametrize(
    "options",
    [
        pytest.param("?target_session_attrs=read-write", id="read-write"),
        # hookline adds target_session_attrs=read-write to a multi-host URL without one.
        pytest.param("", id="by-default"),
    ],
)
async def test_every_accepted_call_is_recorded_once_across_a_failover_to_the_synchronous_standby(
    pair: LocalPostgresPair,
    migrated: str,
    amqp_url: str,
    log_dir: Path,
    workspace: str,
    target: Target,
    options: str,
) -> None:
    async with connect(migrated) as db:
        await apply_yaml(db, TRIGGERS.format(ws=workspace, target=target.base_url))
    services_url = migrated.partition("?")[0] + options
    with delivery_stack(amqp_url, services_url, log_dir, workers=2) as stack:
        url = f"{stack.base_url}/hooks/{workspace}/effect"
        answers: list[Answer] = []
        stop = asyncio.Event()
        sending = asyncio.create_task(burst(url, answers, stop))
        async with connect(migrated) as db:
            await eventually(lambda: _at_least(db, workspace, 150), timeout=60)
            # What the old primary acknowledged (and the workers acked) before it died.
            before = await recorded(db, workspace)
        pair.kill_primary()
        killed_at = time.monotonic()
        await asyncio.sleep(2)  # the failover manager notices; meanwhile the burst goes on
        pair.promote_standby()
        promoted_at = time.monotonic()
        wall_promoted = datetime.datetime.now(datetime.UTC)
        # The burst goes on until calls are accepted again for a while after the promotion.
        await eventually(lambda: _accepted_after(answers, promoted_at + 3), timeout=60)
        stop.set()
        await sending

        accepted = [a.execution_id for a in answers if a.status == 202]
        refused = [a for a in answers if a.status == 503]
        async with connect(migrated) as db:
            await eventually(lambda: _all_succeeded(db, workspace, accepted), timeout=120, every=0.5)
            caught_up = time.monotonic() - promoted_at
            await eventually(lambda: _ready(stack.base_url), timeout=30)
            # The registry listeners follow the new primary: a trigger made now is routed
            # (dispatcher), accepted (ingress) and run (a worker).
            await apply_yaml(db, LATER.format(ws=workspace, target=target.base_url))
            later = await eventually(lambda: _accepted(f"{stack.base_url}/hooks/{workspace}/after-failover"))
            await eventually(lambda: _all_succeeded(db, workspace, [*accepted, later]), timeout=30)
            # The schedules' leader took its lock again on the new primary: ticks run.
            await eventually(lambda: _true(len(target.posts_to(f"/{workspace}/tick")) >= 2), timeout=30)
            # Every service's pool found the new primary: each beat (ready) after the promotion.
            beats = await eventually(lambda: _all_beat(db, wall_promoted), timeout=30)
            done = await recorded(db, workspace)
            ticking = "select id::text from executions where workspace = $1 and trigger = 'ticking'"
            ticks = {r["id"] for r in await db.fetch(ticking, workspace)}
    print(
        f"\nfailover: {len(answers)} calls, {len(accepted)} accepted, {len(refused)} answered 503"
        + (f" over {refused[-1].at - refused[0].at:.1f} s" if refused else "")
        + f"; killed at 0, promoted at {promoted_at - killed_at:.1f} s;"
        f" {len(before)} recorded before the kill; all recorded {caught_up:.1f} s after the promotion"
    )
    assert len(set(accepted)) == len(accepted)
    # Nothing the old primary acknowledged is gone from the new one.
    assert set(before) <= set(done)
    # Every accepted call has exactly one record, succeeded, and its side effect ran once.
    assert set(accepted) <= set(done)
    assert set(done) - ticks == {*accepted, later}
    assert effects(target, f"/{workspace}/effect") == dict.fromkeys(accepted, 1)
    assert beats == {"dispatcher": 1, "ingress": 1, "worker": 2}


@pytest.mark.fault
async def test_a_sql_step_is_refused_hooklines_database_through_its_standby_and_after_a_failover(
    pair: LocalPostgresPair, migrated: str
) -> None:
    async with connect(migrated) as db:
        own = await database_identity(db)
        await db.execute("create role failover_reader login")
    standby = f"postgresql://failover_reader@127.0.0.1:{pair.standby.port}/hookline"
    refused = "refused: it reaches hookline's own database; give the steps a database of their own"
    # A streaming standby is the same cluster (the same system identifier): a step DSN that
    # names it reads hookline's records as surely as one naming the primary.
    step = await asyncpg.connect(**connect_arguments(standby))
    try:
        with pytest.raises(StepDatabaseRefused) as before:
            await check_step_database(step, own)
    finally:
        await step.close()
    pair.kill_primary()
    pair.promote_standby()
    step = await asyncpg.connect(**connect_arguments(standby))
    try:
        with pytest.raises(StepDatabaseRefused) as after:
            await check_step_database(step, own)
    finally:
        await step.close()
    assert (str(before.value), str(after.value)) == (refused, refused)


async def _at_least(db: Connection, workspace: str, count: int) -> bool | None:
    return True if len(await recorded(db, workspace)) >= count else None


async def _accepted_after(answers: list[Answer], since: float) -> bool | None:
    return True if any(a.status == 202 and a.at > since for a in answers) else None


async def _all_succeeded(db: Connection, workspace: str, ids: list[str | None]) -> dict[str, str] | None:
    done = await recorded(db, workspace)
    missing = [i for i in ids if done.get(str(i)) != "succeeded"]
    return done if not missing else None


async def _ready(base_url: str) -> bool | None:
    async with httpx.AsyncClient(timeout=5) as client:
        return True if (await client.get(f"{base_url}/readyz")).status_code == 200 else None


async def _accepted(url: str) -> str | None:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(url, json={})
    return str(answer.json()["execution_id"]) if answer.status_code == 202 else None


async def _all_beat(db: Connection, since: datetime.datetime) -> dict[str, int] | None:
    rows = await db.fetch(
        "select service, count(*) as n from service_heartbeats where seen_at > $1 and ready group by service",
        since,
    )
    beats = {r["service"]: r["n"] for r in rows}
    return beats if beats == {"dispatcher": 1, "ingress": 1, "worker": 2} else None


async def _true(value: bool) -> bool | None:
    return True if value else None
