"""The schedule leader's publishing of one due row, without servers: what goes out, and how
the row is advanced when the broker confirms, refuses one trigger's tick, or goes away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiormq

from dispatcher.schedules import RETRY_SECONDS, ScheduleLeader
from shared.broker.publishers import QueueFull
from shared.db.registry import spec_to_json
from shared.db.schedules import DueSchedule
from shared.errors import BrokerUnavailable
from shared.settings import Settings
from shared.spec.loader import load_text
from shared.spec.schedule import SCHEDULE_METHOD, tick_execution_id
from shared.wire.messages import invocation_decoder

TRIGGER = """
workspace: ws
triggers:
  - name: t
    auth: {type: none}
    methods: []
    schedule: {every: 10s, catch_up: all}
"""
NOW = datetime(2026, 5, 1, 12, 0, 0, 400_000, tzinfo=UTC)
TICKS = [datetime(2026, 5, 1, 11, 59, s, tzinfo=UTC) for s in (40, 50)] + [
    datetime(2026, 5, 1, 12, tzinfo=UTC)
]


class FakePublisher:
    """Confirms, or raises `failures` in turn (None: confirmed)."""

    def __init__(self, *failures: BaseException | None) -> None:
        self.failures = list(failures)
        self.sent: list[tuple[bytes, aiormq.spec.Basic.Properties, str]] = []

    async def publish(self, body: bytes, properties: aiormq.spec.Basic.Properties, routing_key: str) -> None:
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        self.sent.append((body, properties, routing_key))


class FakeConnection:
    def __init__(self) -> None:
        self.executed: list[tuple[Any, ...]] = []

    async def execute(self, sql: str, *args: Any, timeout: float | None = None) -> str:
        self.executed.append(args)
        return "UPDATE 1"


def _due() -> DueSchedule:
    [workspace] = load_text(TRIGGER)
    spec = spec_to_json(workspace.triggers[0])
    return DueSchedule("ws", "t", spec["schedule"], TICKS[0], 3, spec)


def _leader() -> ScheduleLeader:
    settings = Settings(amqp_url="amqp://x", database_url="postgresql://x")
    return ScheduleLeader(settings, None, clock=NOW.timestamp)  # type: ignore[arg-type]


async def test_every_due_tick_is_published_in_order_then_the_row_moves_past_now() -> None:
    publisher, connection = FakePublisher(), FakeConnection()
    assert await _leader()._publish_row(connection, publisher, _due(), NOW)  # type: ignore[arg-type]
    sent = [invocation_decoder.decode(body) for body, _, _ in publisher.sent]
    assert [i.request.scheduled_at for i in sent] == [
        "2026-05-01T11:59:40Z",
        "2026-05-01T11:59:50Z",
        "2026-05-01T12:00:00Z",
    ]
    assert {(i.request.method, i.request.path, i.version, i.mode) for i in sent} == {
        (SCHEDULE_METHOD, "/hooks/ws/t", 3, "async")
    }
    assert [i.id for i in sent] == [tick_execution_id("ws", "t", tick) for tick in TICKS]
    assert [(p.message_id, key) for _, p, key in publisher.sent] == [(i.id, "ws.t") for i in sent]
    [(workspace, trigger, next_at, last_tick, retry_at, error)] = connection.executed
    assert (workspace, trigger) == ("ws", "t")
    assert (next_at, last_tick, retry_at, error) == (TICKS[-1] + timedelta(seconds=10), TICKS[-1], None, None)


async def test_a_refused_tick_waits_with_its_row_and_lets_the_other_rows_go_on() -> None:
    publisher = FakePublisher(None, QueueFull("the trigger's queue is full"))
    connection = FakeConnection()
    assert await _leader()._publish_row(connection, publisher, _due(), NOW)  # type: ignore[arg-type]
    assert len(publisher.sent) == 1
    [(_, _, next_at, last_tick, retry_at, error)] = connection.executed
    assert (next_at, last_tick) == (TICKS[1], TICKS[0])  # the refused tick is next, nothing skipped
    assert retry_at == NOW + timedelta(seconds=RETRY_SECONDS)
    assert error == "the trigger's queue is full"


async def test_a_broker_that_stops_confirming_ends_the_pass_with_the_row_where_it_stopped() -> None:
    publisher = FakePublisher(BrokerUnavailable("the broker did not confirm in time"))
    connection = FakeConnection()
    assert not await _leader()._publish_row(connection, publisher, _due(), NOW)  # type: ignore[arg-type]
    [(_, _, next_at, last_tick, retry_at, error)] = connection.executed
    assert (next_at, last_tick, retry_at, error) == (TICKS[0], None, None, None)
