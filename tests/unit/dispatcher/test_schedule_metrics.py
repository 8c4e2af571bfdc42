"""README (Schedules): `hookline_schedule_ticks_total{workspace}` counts the ticks the leader
published: confirmed ones only, not one the broker refused."""

from __future__ import annotations

from prometheus_client import REGISTRY

from shared.broker.publishers import QueueFull
from tests.unit.dispatcher.test_schedule_leader import NOW, FakeConnection, FakePublisher, _due, _leader


def _ticks(workspace: str = "ws") -> float:
    return REGISTRY.get_sample_value("hookline_schedule_ticks_total", {"workspace": workspace}) or 0.0


async def test_the_ticks_counter_moves_by_the_ticks_published() -> None:
    before = _ticks()
    assert await _leader()._publish_row(FakeConnection(), FakePublisher(), _due(), NOW)  # type: ignore[arg-type]
    assert _ticks() - before == 3  # the three due ticks of the row


async def test_a_refused_tick_is_not_counted() -> None:
    before = _ticks()
    publisher = FakePublisher(None, QueueFull("the trigger's queue is full"))
    assert await _leader()._publish_row(FakeConnection(), publisher, _due(), NOW)  # type: ignore[arg-type]
    assert _ticks() - before == 1
    assert _ticks("another") == 0
