"""`x-delivery-limit` (docs/delivery.md, "Counting"): on a message's last allowed delivery the
worker records it `dead` itself and dead-letters it, rather than run it once more."""

from __future__ import annotations

from typing import Any

import pytest

from shared.wire.messages import Invocation
from tests.unit.worker.test_runner_failures import FakeDelivery, FakeReporter, _invocation, _runner
from worker.consumer import Lane
from worker.deliveries import delivery_state

LIMIT = 10  # the delivery_limit `_runner` gives the Runner


class RecordingReporter(FakeReporter):
    """Keeps each record's status and error, and what the run log held before."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, str | None, int]] = []

    async def record(self, invocation: Invocation, finished: Any, status: str, reply: Any) -> None:
        self.records.append((status, finished.outcome.error, finished.runs))

    async def recorded(self, invocation: Invocation) -> tuple[int, str | None]:
        return 3, "running"  # a run started (a worker crashed in it), none finished


def _delivered(count: int) -> FakeDelivery:
    message = FakeDelivery(_invocation())
    message.headers = {"x-delivery-count": count}
    message.state = delivery_state(message.headers)
    return message


@pytest.mark.parametrize("lane", [Lane.SHARED, Lane.ORDERED])
async def test_the_last_allowed_delivery_is_recorded_dead_and_dead_lettered_without_running(
    lane: Lane,
) -> None:
    reporter = RecordingReporter()
    runner, holds = _runner(reporter)
    message = _delivered(LIMIT)
    await runner.handle(message, lane, "p.work")  # type: ignore[arg-type]
    assert message.calls == ["reject(requeue=False)"]  # to the dead-letter exchange
    assert reporter.records == [
        ("dead", f"delivered {LIMIT + 1} times without being settled (did a worker crash?)", LIMIT + 1)
    ]
    assert holds.calls == []  # an ordered lane is not stopped for it


async def test_a_delivery_below_the_limit_runs_again() -> None:
    reporter = RecordingReporter()
    runner, _ = _runner(reporter)
    message = _delivered(LIMIT - 1)
    await runner.handle(message, Lane.SHARED, "p.work")  # type: ignore[arg-type]
    assert message.calls == ["ack"]
    assert reporter.records == [("succeeded", None, LIMIT)]
