"""A schedule's tick runs once although its message may be published twice under one id."""

from __future__ import annotations

import uuid
from typing import Any

from shared.spec.schedule import SCHEDULE_METHOD
from shared.wire.messages import Invocation, RequestData
from tests.unit.worker.test_runner_failures import FakeDelivery, FakeReporter, _runner
from worker.consumer import Lane
from worker.deliveries import DeliveryState


def _tick() -> Invocation:
    return Invocation(
        id=str(uuid.uuid4()),
        workspace="ws",
        trigger="t",
        version=1,
        mode="async",
        received_at=0.0,
        request=RequestData(method=SCHEDULE_METHOD, path="/hooks/ws/t", scheduled_at="2026-03-29T01:00:00Z"),
    )


class ClaimingReporter(FakeReporter):
    """Claims succeed while `free`; what was claimed and recorded is kept."""

    def __init__(self, free: bool) -> None:
        super().__init__()
        self.free = free
        self.claimed: list[str] = []
        self.recorded_runs: list[str] = []

    async def claim(self, invocation: Invocation) -> bool:
        self.claimed.append(invocation.id)
        return self.free

    async def recorded(self, invocation: Invocation) -> tuple[int, str | None]:
        return 0, "running"

    async def record(self, invocation: Invocation, finished: Any, status: str, reply: Any) -> None:
        self.recorded_runs.append(status)


async def test_the_first_copy_of_a_tick_claims_its_run_and_runs() -> None:
    reporter = ClaimingReporter(free=True)
    runner, _ = _runner(reporter)
    tick = _tick()
    message = FakeDelivery(tick)
    await runner.handle(message, Lane.SHARED, "p.work.ws.t")  # type: ignore[arg-type]
    assert reporter.claimed == [tick.id]
    assert reporter.recorded_runs == ["succeeded"]
    assert message.calls == ["ack"]


async def test_a_second_copy_of_a_tick_is_settled_without_running() -> None:
    reporter = ClaimingReporter(free=False)
    runner, _ = _runner(reporter)
    message = FakeDelivery(_tick())
    await runner.handle(message, Lane.ORDERED, "p.ordered.ws.t")  # type: ignore[arg-type]
    assert reporter.recorded_runs == []
    assert message.calls == ["ack"]


async def test_a_redelivered_tick_runs_again_without_a_claim() -> None:
    # Its worker died mid-run: the claim is its own; the broker hands it to another worker.
    reporter = ClaimingReporter(free=False)
    runner, _ = _runner(reporter)
    message = FakeDelivery(_tick())
    message.state = DeliveryState(redeliveries=1)
    await runner.handle(message, Lane.SHARED, "p.work.ws.t")  # type: ignore[arg-type]
    assert reporter.claimed == []
    assert reporter.recorded_runs == ["succeeded"]
    assert message.calls == ["ack"]


async def test_a_call_is_never_claimed() -> None:
    reporter = ClaimingReporter(free=False)
    runner, _ = _runner(reporter)
    call = _tick()
    call.request.method = "POST"
    message = FakeDelivery(call)
    await runner.handle(message, Lane.SHARED, "p.work.ws.t")  # type: ignore[arg-type]
    assert reporter.claimed == []
    assert reporter.recorded_runs == ["succeeded"]
