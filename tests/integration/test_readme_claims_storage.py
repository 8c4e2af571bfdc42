"""README claims about what is stored, on real PostgreSQL (and RabbitMQ for the gauges): the
next `make run` finds its data, migrations apply once each under a lock, a token is kept as
its SHA-256 digest only, and the dispatcher's `hookline_dead_letters` counts what waits."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import asyncpg
import pytest
from prometheus_client import REGISTRY

from dispatcher.metrics import sample
from dispatcher.retention import sweep_once
from shared.db.migrate import migrate, migrations
from shared.db.pool import Connection, create_pool
from shared.db.tokens import create_token, token_scope
from shared.devstack.localservers import LocalPostgres, processes_mentioning
from shared.settings import Settings
from tests.conftest import _create_database, _drop_database, _with_database
from tests.servers import traversable_tmp_dir

pytestmark = pytest.mark.integration


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A project folder whose `.hookline/` the postgres user may enter."""
    with traversable_tmp_dir("hookline-claims-") as path:
        yield path


@pytest.fixture
async def bare_database(postgres_server_url: str) -> AsyncIterator[str]:
    """A database holding none of hookline's tables, dropped afterwards."""
    name = f"hookline_claims_{uuid.uuid4().hex[:8]}"
    await _create_database(postgres_server_url, name)
    yield _with_database(postgres_server_url, name)
    await _drop_database(postgres_server_url, name)


async def test_the_next_make_run_finds_the_data_the_last_one_left_in_hookline(state_dir: Path) -> None:
    # README: `make run` keeps PostgreSQL's data under `.hookline/`; "the next `make run`
    # reuses the data" (shared/cli/up.py starts LocalPostgres(.hookline/postgres), then migrates).
    folder = state_dir / ".hookline" / "postgres"
    first = LocalPostgres(folder, fast=True)
    url = await asyncio.to_thread(first.start)
    try:
        connection = await asyncpg.connect(url)
        try:
            assert len(await migrate(connection)) == len(migrations())
            await connection.execute(
                "insert into workspaces (name, description) values ('kept', 'from run 1')"
            )
        finally:
            await connection.close()
    finally:
        await asyncio.to_thread(first.stop)

    second = LocalPostgres(folder, fast=True)
    url = await asyncio.to_thread(second.start)
    try:
        connection = await asyncpg.connect(url)
        try:
            assert await migrate(connection) == []  # every file was applied by the first run
            kept = await connection.fetchval("select description from workspaces where name = 'kept'")
        finally:
            await connection.close()
    finally:
        await asyncio.to_thread(second.stop)
    assert kept == "from run 1"
    assert processes_mentioning(state_dir) == []


async def test_two_migrations_at_once_apply_each_file_once(bare_database: str) -> None:
    # README (Upgrading): "`hookline migrate` applies the numbered files ... once each, under a lock".
    one, two = await asyncpg.connect(bare_database), await asyncpg.connect(bare_database)
    try:
        applied = await asyncio.gather(migrate(one), migrate(two))
        versions = await one.fetch("select version, name from schema_migrations order by version")
        again = await migrate(one)
    finally:
        await one.close()
        await two.close()
    every = [name for _, name, _ in migrations()]
    assert sorted(applied[0] + applied[1]) == every  # each file by one of the two, none twice
    assert [] in applied  # the second to get the lock found nothing left to do
    assert [(r["version"], r["name"]) for r in versions] == [(n, name) for n, name, _ in migrations()]
    assert again == []


async def test_a_workspace_token_is_kept_as_its_sha256_digest_only(db: Connection, workspace: str) -> None:
    # README: a workspace token is "printed once, stored as a SHA-256 digest".
    await db.execute("insert into workspaces (name, description) values ($1, '')", workspace)
    created = await create_token(db, workspace, "team")
    row = await db.fetchrow("select * from api_tokens where id = $1", created.id)
    assert row is not None
    assert row["digest"] == hashlib.sha256(created.token.encode()).digest()
    stored = [str(value) for value in row.values()] + [bytes(row["digest"]).hex()]
    assert [value for value in stored if created.token in value] == []
    assert row["prefix"] == created.token[:8]  # the part listings show, not the token
    assert await token_scope(db, created.token) == (True, workspace)


def _gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_the_dead_letters_gauge_counts_the_letters_waiting_per_trigger(
    amqp_url: str, database_url: str, db: Connection, workspace: str
) -> None:
    # README (Metrics): the dispatcher samples "the dead letters waiting per trigger
    # (`hookline_dead_letters`: the dead-letter queue itself is emptied into PostgreSQL)".
    for trigger, count in (("three", 3), ("one", 1)):
        for _ in range(count):
            await db.execute(
                "insert into dead_letters (id, workspace, trigger, reason, queue, died_at, body, headers)"
                " values ($1, $2, $3, 'rejected', 'q', now(), '', '')",
                str(uuid.uuid4()),
                workspace,
                trigger,
            )
    broker = await aio_pika.connect(amqp_url)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        await sample(broker, pool, f"hltest-claims-{uuid.uuid4().hex[:8]}")
        assert _gauge("hookline_dead_letters", workspace=workspace, trigger="three") == 3
        assert _gauge("hookline_dead_letters", workspace=workspace, trigger="one") == 1
        # Replayed (gone from the table): the next sample drops the series.
        await db.execute("delete from dead_letters where workspace = $1 and trigger = 'one'", workspace)
        await sample(broker, pool, f"hltest-claims-{uuid.uuid4().hex[:8]}")
        assert _gauge("hookline_dead_letters", workspace=workspace, trigger="one") is None
        assert _gauge("hookline_dead_letters", workspace=workspace, trigger="three") == 3
    finally:
        await db.execute("delete from dead_letters where workspace = $1", workspace)
        await pool.close()
        await broker.close()


async def test_the_retention_counter_moves_by_the_rows_a_sweep_deleted(bare_database: str) -> None:
    # README (Retention): "`hookline_retention_deleted_total{family}` counts what went"; a running
    # execution is kept until it finishes.
    connection = await asyncpg.connect(bare_database)
    try:
        await migrate(connection)
        for status, count in (("succeeded", 2), ("dead", 1), ("running", 1)):
            await connection.execute(
                "insert into executions (id, workspace, trigger, trigger_version, status, received_at,"
                " started_at, finished_at, request) select gen_random_uuid(), 'w', 't', 1, $1,"
                " now() - '40 days'::interval, now() - '40 days'::interval, now() - '40 days'::interval,"
                " '{}'::json from generate_series(1, $2)",
                status,
                count,
            )
    finally:
        await connection.close()
    before = REGISTRY.get_sample_value("hookline_retention_deleted_total", {"family": "executions"}) or 0.0
    pool = await create_pool(bare_database, min_size=1, max_size=1)
    try:
        swept = await sweep_once(pool, Settings(amqp_url="amqp://unused", database_url=bare_database))
        async with pool.acquire() as connection:
            left = await connection.fetch("select status from executions")
    finally:
        await pool.close()
    assert swept is not None
    assert swept.deleted["executions"] == 3
    after = REGISTRY.get_sample_value("hookline_retention_deleted_total", {"family": "executions"})
    assert after == before + 3
    assert [r["status"] for r in left] == ["running"]
    assert (REGISTRY.get_sample_value("hookline_retention_last_sweep_timestamp_seconds") or 0) > 0
