"""A keyed call runs once although its publish may go unconfirmed and its retry publish it
again under the same id: every first copy of a keyed call claims its run before running."""

from __future__ import annotations

import uuid

from shared.wire.amqp import invocation_properties
from shared.wire.messages import Invocation, RequestData
from tests.unit.worker.test_runner_failures import FakeDelivery, _runner
from tests.unit.worker.test_schedule_ticks_run_once import ClaimingReporter
from worker.consumer import Lane
from worker.deliveries import FIRST_DELIVERY, DeliveryState, delivery_state


def _call() -> Invocation:
    return Invocation(
        id=str(uuid.uuid4()),
        workspace="ws",
        trigger="t",
        version=1,
        mode="async",
        received_at=0.0,
        request=RequestData(method="POST", path="/hooks/ws/t"),
    )


def _keyed(invocation: Invocation, state: DeliveryState | None = None) -> FakeDelivery:
    message = FakeDelivery(invocation)
    properties = invocation_properties(invocation.id, claim_run=True)
    message.headers = dict(properties.headers or {})
    message.state = state or delivery_state(message.headers)
    return message


def test_a_keyed_call_is_published_with_the_claim_run_mark_and_an_unkeyed_one_without() -> None:
    assert invocation_properties("e-1", claim_run=True).headers == {"x-hookline-claim-run": True}
    assert invocation_properties("e-1").headers is None
    assert delivery_state({"x-hookline-claim-run": True}) == DeliveryState(claim_run=True)
    assert delivery_state({"x-delivery-count": 0}) is FIRST_DELIVERY


async def test_the_first_copy_of_a_keyed_call_claims_its_run_and_runs() -> None:
    reporter = ClaimingReporter(free=True)
    runner, _ = _runner(reporter)
    call = _call()
    message = _keyed(call)
    await runner.handle(message, Lane.SHARED, "p.work.ws.t")  # type: ignore[arg-type]
    assert reporter.claimed == [call.id]
    assert reporter.recorded_runs == ["succeeded"]
    assert message.calls == ["ack"]


async def test_a_second_copy_of_a_keyed_call_is_settled_without_running_on_either_lane() -> None:
    for lane, queue in ((Lane.SHARED, "p.work.ws.t"), (Lane.ORDERED, "p.ordered.ws.t")):
        reporter = ClaimingReporter(free=False)
        runner, _ = _runner(reporter)
        call = _call()
        message = _keyed(call)
        await runner.handle(message, lane, queue)  # type: ignore[arg-type]
        assert reporter.claimed == [call.id]
        assert reporter.recorded_runs == []
        assert message.calls == ["ack"]


async def test_a_redelivered_or_retried_keyed_call_runs_without_a_claim() -> None:
    # Its run was claimed by this very copy before its worker died (or failed and retried).
    for state in (DeliveryState(redeliveries=1, claim_run=True), DeliveryState(attempt=2, claim_run=True)):
        reporter = ClaimingReporter(free=False)
        runner, _ = _runner(reporter)
        message = _keyed(_call(), state)
        await runner.handle(message, Lane.SHARED, "p.work.ws.t")  # type: ignore[arg-type]
        assert reporter.claimed == []
        assert reporter.recorded_runs == ["succeeded"]


async def test_an_unkeyed_call_pays_no_claim() -> None:
    reporter = ClaimingReporter(free=False)
    runner, _ = _runner(reporter)
    message = FakeDelivery(_call())
    await runner.handle(message, Lane.SHARED, "p.work.ws.t")  # type: ignore[arg-type]
    assert reporter.claimed == []
    assert reporter.recorded_runs == ["succeeded"]
