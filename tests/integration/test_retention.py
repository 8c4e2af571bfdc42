"""Retention: what is past its age goes, in batches, while calls are being recorded; what is
younger stays, a trigger's own `retention` wins over the default up to the deployment's cap,
one leader sweeps at a time."""

from __future__ import annotations

import asyncio
import datetime
import re

import httpx

from shared.db import locks
from shared.db.pool import Connection, connect
from shared.db.retention import sweep_as_leader
from tests.helpers import apply_yaml, eventually
from tests.integration.calls import cli
from tests.stack import Services

TRIGGERS = """
workspace: {ws}
triggers:
  - name: plain
    auth: {{type: none}}
    workflow: [{{id: seen, map: {{n: "{{{{ request.body.n }}}}"}}}}]
  - name: week
    auth: {{type: none}}
    retention: 7d
    workflow: [{{id: seen, map: {{n: "{{{{ request.body.n }}}}"}}}}]
  - name: quarter
    auth: {{type: none}}
    retention: 90d
    workflow: [{{id: seen, map: {{n: "{{{{ request.body.n }}}}"}}}}]
  - name: forever
    auth: {{type: none}}
    retention: 100000d
    workflow: [{{id: seen, map: {{n: "{{{{ request.body.n }}}}"}}}}]
"""

DAY = datetime.timedelta(days=1)


async def _runs(
    db: Connection, ws: str, trigger: str, status: str, age: datetime.timedelta, count: int
) -> None:
    await db.execute(
        "insert into executions (id, workspace, trigger, trigger_version, status, received_at, started_at,"
        " finished_at, request) select gen_random_uuid(), $1, $2, 1, $3, now() - $4::interval,"
        " now() - $4::interval, now() - $4::interval, '{}'::json from generate_series(1, $5)",
        ws,
        trigger,
        status,
        age,
        count,
    )


async def _count(db: Connection, ws: str, trigger: str, older: datetime.timedelta) -> int:
    return int(
        await db.fetchval(
            "select count(*) from executions where workspace = $1 and trigger = $2"
            " and received_at < now() - $3::interval",
            ws,
            trigger,
            older,
        )
    )


async def test_retention_deletes_only_what_is_past_its_age_in_batches_while_calls_are_recorded(
    stack: Services, db: Connection, database_url: str, workspace: str
) -> None:
    await apply_yaml(db, TRIGGERS.format(ws=workspace))
    await _runs(db, workspace, "plain", "succeeded", 40 * DAY, 1200)
    await _runs(db, workspace, "plain", "dead", 31 * DAY, 30)
    await _runs(db, workspace, "plain", "running", 40 * DAY, 2)  # unfinished: kept
    await _runs(db, workspace, "plain", "failed", 20 * DAY, 25)  # younger than 30 days: kept
    await _runs(db, workspace, "week", "succeeded", 10 * DAY, 40)  # past its own 7 days
    await _runs(db, workspace, "week", "succeeded", 5 * DAY, 15)
    await _runs(db, workspace, "quarter", "succeeded", 40 * DAY, 10)  # longer than the default: kept
    await _runs(db, workspace, "forever", "succeeded", 400 * DAY, 10)  # past the deployment's cap
    await _runs(db, workspace, "forever", "succeeded", 300 * DAY, 5)
    await db.execute(
        "insert into trigger_samples (workspace, trigger, execution_id, received_at, request)"
        " values ($1, 'week', gen_random_uuid(), now() - '40 days'::interval, '{}')",
        workspace,
    )
    await db.execute(
        "insert into rejected_calls (workspace, trigger, at, status, problem_type, reason, method, headers)"
        " select $1, 'plain', now() - make_interval(days => d), 401, 'auth', 'no key', 'POST', '{}'"
        " from unnest(array[40, 35, 2]) as d",
        workspace,
    )
    await db.execute(
        "insert into idempotency_keys (workspace, trigger, key, execution_id, expires_at)"
        " values ($1, 'plain', 'gone', gen_random_uuid(), now() - '1 minute'::interval),"
        " ($1, 'plain', 'kept', gen_random_uuid(), now() + '1 hour'::interval)",
        workspace,
    )
    await db.execute(
        "insert into rate_limits (bucket, tat) values ($1 || ':full', now() - '1 second'::interval),"
        " ($1 || ':busy', now() + '1 minute'::interval)",
        workspace,
    )

    # The session's dispatcher is the retention leader: it swept when it started.
    async def dispatcher_swept() -> bool | None:
        swept = await db.fetchval("select count(*) from retention_sweeps where family = 'executions'")
        return True if swept else None

    await eventually(dispatcher_swept, timeout=20)

    accepted: list[str] = []
    done = asyncio.Event()

    async def calls() -> None:
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            n = 0
            while not done.is_set() or n < 20:
                answer = await client.post(f"/hooks/{workspace}/plain", json={"n": n})
                if answer.status_code == 202:
                    accepted.append(answer.json()["execution_id"])
                n += 1

    async def first_recorded() -> bool | None:
        return True if accepted else None

    sender = asyncio.create_task(calls())
    await eventually(first_recorded, timeout=20)
    async with connect(database_url) as sweeper:
        # (None, tried again, if the session's dispatcher happens to be sweeping right now)
        swept = await eventually(lambda: sweep_as_leader(sweeper, 30 * DAY, 50, longest=365 * DAY))
    done.set()
    await sender
    assert swept is not None
    assert swept.deleted["executions"] >= 1280
    assert swept.batches >= 1270 // 50

    assert await _count(db, workspace, "plain", 30 * DAY) == 2  # the two still running
    assert await _count(db, workspace, "plain", 19 * DAY) == 2 + 25
    assert await _count(db, workspace, "week", 7 * DAY) == 0
    assert await _count(db, workspace, "week", 4 * DAY) == 15
    assert await _count(db, workspace, "quarter", 39 * DAY) == 10
    assert await _count(db, workspace, "forever", 299 * DAY) == 5
    samples = await db.fetch("select trigger from trigger_samples where workspace = $1", workspace)
    assert "week" not in [r["trigger"] for r in samples]  # 40 days old (plain's is fresh from the calls)
    rejected = await db.fetchval("select count(*) from rejected_calls where workspace = $1", workspace)
    assert rejected == 1
    keys = await db.fetch("select key from idempotency_keys where workspace = $1", workspace)
    assert [r["key"] for r in keys] == ["kept"]
    buckets = await db.fetch("select bucket from rate_limits where bucket like $1 || ':%'", workspace)
    assert [r["bucket"] for r in buckets] == [f"{workspace}:busy"]

    # Every call accepted while the sweep ran was recorded, and ran.
    async def all_ran() -> bool | None:
        finished = await db.fetchval(
            "select count(*) from executions where id = any($1::uuid[]) and status = 'succeeded'", accepted
        )
        return True if finished == len(accepted) else None

    await eventually(all_ran, timeout=30, every=0.2)

    status = cli(stack, "status")
    line = next(x for x in status.stdout.splitlines() if x.startswith("retention:"))
    assert re.fullmatch(
        r"retention: last sweep \S+ deleted \d+ executions, \d+ idempotency keys, \d+ rate limits,"
        r" \d+ rejected calls, \d+ samples, \d+ step checkpoints \(\d+ rows in all\)",
        line,
    ), line


async def test_only_one_process_sweeps_at_a_time(database_url: str) -> None:
    async with connect(database_url) as leader, connect(database_url) as other:
        await leader.execute("select pg_advisory_lock($1)", locks.RETENTION)
        try:
            assert await sweep_as_leader(other, 30 * DAY, 100) is None
        finally:
            await leader.execute("select pg_advisory_unlock($1)", locks.RETENTION)
        assert await eventually(lambda: sweep_as_leader(other, 30 * DAY, 100))  # its turn now
