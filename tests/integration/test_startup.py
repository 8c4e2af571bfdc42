"""A service whose start-up fails half-way unwinds what it opened and says why in one line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from shared.settings import load_settings
from shared.wire import topology
from tests.conftest import _create_database, _drop_database, _with_database
from worker.service import Worker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def unmigrated_database(postgres_server_url: str) -> AsyncIterator[str]:
    """A database that accepts connections but holds none of hookline's tables."""
    name = f"hookline_bare_{uuid.uuid4().hex[:8]}"
    await _create_database(postgres_server_url, name)
    yield _with_database(postgres_server_url, name)
    await _drop_database(postgres_server_url, name)


@pytest.fixture
async def ready_queue(amqp_url: str) -> AsyncIterator[str]:
    """A prefix whose work queue exists (as if a dispatcher had declared it), deleted afterwards."""
    prefix = f"hltest-start-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(topology.work_queue_name(prefix), auto_delete=False)
    yield prefix
    await queue.delete(if_unused=False, if_empty=False)
    await connection.close()


async def test_a_worker_the_database_refuses_after_the_broker_connected_leaves_nothing_open(
    amqp_url: str, unmigrated_database: str, ready_queue: str
) -> None:
    settings = load_settings(
        {
            "HOOKLINE_DATABASE_URL": unmigrated_database,
            "HOOKLINE_AMQP_URL": amqp_url,
            "HOOKLINE_AMQP_PREFIX": ready_queue,
        },
        state_dir=Path("/nonexistent"),
    )
    before = asyncio.all_tasks()
    worker = Worker(settings, concurrency=2)
    with pytest.raises(asyncpg.UndefinedTableError, match="lane_layouts"):
        await asyncio.wait_for(worker.run(), 60)
    # The broker had connected (the consumer was set up) before the database refused.
    connection = worker._broker.connection
    assert connection is not None
    assert connection.is_closed
    assert worker._pool.is_closing()
    await asyncio.sleep(0)  # let cancelled tasks finish their last step
    left = {task for task in asyncio.all_tasks() - before if not task.done()}
    assert left == set(), [task.get_name() for task in left]


async def test_a_worker_process_the_database_refuses_exits_1_with_one_line(
    amqp_url: str, unmigrated_database: str, ready_queue: str
) -> None:
    env = {
        **os.environ,
        "HOOKLINE_DATABASE_URL": unmigrated_database,
        "HOOKLINE_AMQP_URL": amqp_url,
        "HOOKLINE_AMQP_PREFIX": ready_queue,
        "HOOKLINE_LOG_JSON": "true",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    said = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert said == [
        'hookline worker: the database refused: relation "lane_layouts" does not exist '
        "(is it migrated? `hookline migrate`)"
    ]
