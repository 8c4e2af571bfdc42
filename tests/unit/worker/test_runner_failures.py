"""Whatever fails after a message is decoded, its delivery is settled: the paths of
`Runner` that end in `broken`, a refused record, and the watchdog, without a broker."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any, Literal

import msgspec

from shared.errors import RecordRefused
from shared.spec.model import Retry
from shared.wire.messages import Invocation, Reply, RequestData, invocation_encoder
from worker.consumer import Lane, Runner
from worker.deliveries import FIRST_DELIVERY
from worker.engine import Outcome
from worker.watchdog import Watchdog


def _invocation(mode: Literal["async", "request_response"] = "async") -> Invocation:
    return Invocation(
        id=str(uuid.uuid4()),
        workspace="ws",
        trigger="t",
        version=1,
        mode=mode,
        received_at=0.0,
        request=RequestData(method="POST", path="/"),
    )


class FakeDelivery:
    """What the runner reads of a delivery, and what it did to it."""

    def __init__(self, invocation: Invocation, reply_to: str | None = None) -> None:
        self.body = invocation_encoder.encode(invocation)
        self.headers: dict[str, Any] = {}
        self.state = FIRST_DELIVERY
        self.reply_to = reply_to
        self.correlation_id = invocation.id
        self.message_id = invocation.id
        self.routing_key = "ws.t"
        self.orphaned = False
        self.calls: list[str] = []

    @property
    def settled(self) -> bool:
        return bool(self.calls)

    async def ack(self) -> None:
        self.calls.append("ack")

    async def reject(self, requeue: bool = False) -> None:
        self.calls.append(f"reject(requeue={requeue})")

    async def nack(self, requeue: bool = True) -> None:
        self.calls.append(f"nack(requeue={requeue})")


class FakeWorkflows:
    def __init__(self, on_exhausted: str) -> None:
        retry = Retry(max_attempts=1, on_exhausted=on_exhausted)  # type: ignore[arg-type]
        self.workflow = SimpleNamespace(
            trigger=SimpleNamespace(retry=retry, workflow_timeout=1.0), run=self._run, on_error=[]
        )

    async def _run(self, invocation: Invocation, attempt: int, **_: Any) -> Outcome:
        return Outcome(True, output={"ok": True})

    async def get(self, workspace: str, trigger: str, version: int) -> Any:
        return self.workflow


class FakeReporter:
    """Records fail with `failures` in turn (None: committed)."""

    def __init__(self, *failures: Exception | None) -> None:
        self.failures = list(failures)
        self.lost: list[str] = []
        self.replies: list[str | None] = []

    async def record(self, invocation: Invocation, finished: Any, status: str, reply: Any) -> None:
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure

    async def record_lost(self, invocation: Invocation, error: str, finished: Any = None) -> None:
        self.lost.append(error)

    async def reply(self, message: Any, reply: Reply) -> None:
        self.replies.append(msgspec.json.decode(reply.content)["detail"])


class FakeHolds:
    def __init__(self, answer: str) -> None:
        self._answer = answer
        self.calls: list[str] = []

    async def held(self, queue: str, execution_id: str) -> None:
        return None

    async def hold(
        self, queue: str, workspace: str, trigger: str, execution_id: str, error: str | None
    ) -> None:
        self.calls.append(f"hold: {error}")

    async def answer(self, queue: str, gone: Any = None) -> str:
        self.calls.append("answer")
        return self._answer

    async def release(self, queue: str) -> None:
        self.calls.append("release")


def _runner(
    reporter: FakeReporter, on_exhausted: str = "skip", answer: str = "skip"
) -> tuple[Runner, FakeHolds]:
    holds = FakeHolds(answer)
    runner = Runner(
        FakeWorkflows(on_exhausted),  # type: ignore[arg-type]
        reporter,  # type: ignore[arg-type]
        holds,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        prefix="p",
        delivery_limit=10,
        stopping=asyncio.Event(),
    )
    return runner, holds


async def test_an_exception_after_the_run_requeues_a_shared_delivery_toward_the_delivery_limit() -> None:
    runner, _ = _runner(FakeReporter(RuntimeError("a bug")))
    message = FakeDelivery(_invocation())
    await runner.handle(message, Lane.SHARED, "p.work")  # type: ignore[arg-type]
    assert message.calls == ["nack(requeue=True)"]


async def test_an_exception_after_the_run_dead_letters_an_ordered_delivery_with_a_minimal_record() -> None:
    reporter = FakeReporter(RuntimeError("a bug"))
    runner, holds = _runner(reporter, on_exhausted="skip")
    message = FakeDelivery(_invocation())
    await runner.handle(message, Lane.ORDERED, "p.lane")  # type: ignore[arg-type]
    assert message.calls == ["reject(requeue=False)"]
    assert reporter.lost == ["internal error: RuntimeError; dead-lettered"]
    assert holds.calls == []


async def test_an_exception_on_a_lane_that_stops_holds_it_and_runs_again_when_the_operator_says_retry() -> (
    None
):
    reporter = FakeReporter(RuntimeError("a bug"))  # the second record is committed
    runner, holds = _runner(reporter, on_exhausted="stop", answer="retry")
    message = FakeDelivery(_invocation())
    await runner.handle(message, Lane.ORDERED, "p.lane")  # type: ignore[arg-type]
    assert holds.calls == ["hold: internal error: RuntimeError", "answer", "release"]
    assert message.calls == ["ack"]
    assert reporter.lost == []


async def test_a_refused_record_dead_letters_the_message_and_answers_the_waiting_caller() -> None:
    reporter = FakeReporter(RecordRefused("the execution could not be recorded (DataError)"))
    runner, _ = _runner(reporter)
    message = FakeDelivery(_invocation("request_response"), reply_to="amq.rabbitmq.reply-to.x")
    await runner.handle(message, Lane.SHARED, "p.work")  # type: ignore[arg-type]
    assert message.calls == ["reject(requeue=False)"]
    assert reporter.replies == ["the execution could not be recorded (DataError)"]


async def test_an_undecodable_message_is_dead_lettered_with_a_minimal_record_from_its_id_and_routing_key() -> (
    None
):
    reporter = FakeReporter()
    runner, _ = _runner(reporter)
    message = FakeDelivery(_invocation())
    message.body = b"\x91" * 2000 + b"\xc0"  # not an invocation: msgpack arrays nested 2,000 deep
    await runner.handle(message, Lane.SHARED, "p.work")  # type: ignore[arg-type]
    assert message.calls == ["reject(requeue=False)"]
    assert reporter.lost == ["the message could not be decoded; dead-lettered"]


async def _hold_forever(watchdog: Watchdog, settled: list[str]) -> None:
    async def overdue() -> None:
        settled.append("settled")

    watchdog.watch("delivery", 0, overdue)
    await asyncio.Event().wait()


async def test_the_watchdog_settles_a_delivery_held_past_its_deadline_and_the_worker_is_not_ready() -> None:
    async def up() -> bool:
        return False

    watchdog = Watchdog(margin=0.05, longest=10, outage=up, every=0.01)
    settled: list[str] = []
    checking = asyncio.create_task(watchdog.run())
    held = asyncio.create_task(_hold_forever(watchdog, settled))
    try:
        await asyncio.wait_for(asyncio.gather(held, return_exceptions=True), 2)
    finally:
        checking.cancel()
    assert held.cancelled()
    assert settled == ["settled"]
    assert not watchdog.healthy


async def test_the_watchdog_waits_while_the_database_is_away() -> None:
    async def away() -> bool:
        return True

    watchdog = Watchdog(margin=0.01, longest=10, outage=away, every=0.01)
    settled: list[str] = []
    checking = asyncio.create_task(watchdog.run())
    held = asyncio.create_task(_hold_forever(watchdog, settled))
    await asyncio.sleep(0.2)
    checking.cancel()
    held.cancel()
    assert settled == []
    assert watchdog.healthy


class HangingReporter(FakeReporter):
    """A record that never commits (a lock held elsewhere, a bug)."""

    async def record(self, invocation: Invocation, finished: Any, status: str, reply: Any) -> None:
        await asyncio.Event().wait()


async def test_an_ordered_delivery_whose_record_hangs_is_dead_lettered_by_the_watchdog_with_a_minimal_record() -> (
    None
):
    async def up() -> bool:
        return False

    watchdog = Watchdog(margin=0.05, longest=10, outage=up, every=0.01)
    reporter = HangingReporter()
    runner, _ = _runner(reporter)
    runner._watchdog = watchdog  # what Worker passes in
    runner._workflows.workflow.trigger.workflow_timeout = 0.05  # type: ignore[attr-defined]
    checking = asyncio.create_task(watchdog.run())
    message = FakeDelivery(_invocation())
    run = asyncio.create_task(runner.handle(message, Lane.ORDERED, "p.lane"))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(asyncio.gather(run, return_exceptions=True), 2)
    finally:
        checking.cancel()
    assert run.cancelled()
    assert message.calls == ["reject(requeue=False)"]
    assert reporter.lost == ["held past its deadline; dead-lettered by the watchdog"]
    assert not watchdog.healthy
