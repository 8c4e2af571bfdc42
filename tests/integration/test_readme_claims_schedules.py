"""README (Schedules): "`hookline_schedule_leader` is 1 on the leading dispatcher" (and 0 on a
standby, and again once it stops leading), on real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import REGISTRY

from dispatcher.schedules import ScheduleLeader
from shared.broker.link import BrokerLink
from shared.db import locks
from shared.db.migrate import migrate
from shared.settings import Settings
from tests.conftest import _create_database, _drop_database, _with_database
from tests.helpers import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def schedules_database(postgres_server_url: str) -> AsyncIterator[str]:
    """A migrated database of this test alone: no other dispatcher holds its schedules lock."""
    name = f"hookline_leader_{uuid.uuid4().hex[:8]}"
    await _create_database(postgres_server_url, name)
    url = _with_database(postgres_server_url, name)
    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    yield url
    await _drop_database(postgres_server_url, name)


def _leader_gauge() -> float | None:
    return REGISTRY.get_sample_value("hookline_schedule_leader")


async def test_the_leader_gauge_is_0_standing_by_1_while_leading_and_0_once_stopped(
    amqp_url: str, schedules_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher.schedules")
    settings = Settings(
        amqp_url=amqp_url,
        database_url=schedules_database,
        amqp_prefix=f"hltest-leader-{uuid.uuid4().hex[:8]}",
    )
    link = BrokerLink(amqp_url, "hookline-test-leader")
    await link.start()
    # Another dispatcher leads: it holds the schedules lock on its own session.
    other = await asyncpg.connect(schedules_database)
    await other.execute("select pg_advisory_lock($1)", locks.SCHEDULES)
    leader = ScheduleLeader(settings, link)
    running = asyncio.create_task(leader.run(), name="schedule-leader")
    try:

        async def standing_by() -> bool | None:
            said = any(r.getMessage().startswith("schedules: standing by") for r in caplog.records)
            return True if said else None

        await eventually(standing_by, timeout=20)
        assert _leader_gauge() == 0
        assert not leader.leading

        await other.close()  # the other dispatcher died: its session's lock is gone

        async def leading() -> bool | None:
            return True if _leader_gauge() == 1 else None

        await eventually(leading, timeout=10)
        assert leader.leading
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        if not other.is_closed():
            await other.close()
        await link.close()
    assert _leader_gauge() == 0
