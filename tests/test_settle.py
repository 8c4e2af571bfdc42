"""The acknowledgement table and the retry arithmetic, without a broker."""

from __future__ import annotations

from typing import Any

import pytest

from shared.spec.model import Retry
from shared.spec.types import Duration
from shared.wire.amqp import republished_headers
from worker.consumer import SETTLEMENT, Action, Lane, Verdict, decide, settle
from worker.retries import backoff_delay


def test_the_settlement_table_covers_every_case_and_never_requeues_an_ordered_lane() -> None:
    assert {(v, lane): a.value for (v, lane), a in SETTLEMENT.items()} == {
        (Verdict.DONE, Lane.SHARED): "ack",
        (Verdict.DONE, Lane.ORDERED): "ack",
        (Verdict.RETRY, Lane.SHARED): "delay-then-ack",
        (Verdict.RETRY, Lane.ORDERED): "keep",
        (Verdict.GIVE_UP, Lane.SHARED): "dead-letter",
        (Verdict.GIVE_UP, Lane.ORDERED): "dead-letter",
        (Verdict.HOLD, Lane.SHARED): "dead-letter",
        (Verdict.HOLD, Lane.ORDERED): "keep",
        (Verdict.BROKEN, Lane.SHARED): "requeue",
        (Verdict.BROKEN, Lane.ORDERED): "dead-letter",
    }


@pytest.mark.parametrize(
    ("ok", "attempt", "on_exhausted", "answered", "verdict"),
    [
        (True, 1, "skip", False, Verdict.DONE),
        (False, 1, "skip", False, Verdict.RETRY),
        (False, 2, "skip", False, Verdict.RETRY),
        (False, 3, "skip", False, Verdict.GIVE_UP),
        (False, 3, "stop", False, Verdict.HOLD),
        (False, 1, "skip", True, Verdict.DONE),  # the caller got its 500: no retry after that
    ],
)
def test_decide(ok: bool, attempt: int, on_exhausted: Any, answered: bool, verdict: Verdict) -> None:
    assert decide(ok, attempt, Retry(max_attempts=3, on_exhausted=on_exhausted), answered) is verdict


def test_backoff_doubles_up_to_its_cap() -> None:
    retry = Retry(max_attempts=10, backoff=Duration(1), max_backoff=Duration(10))
    assert [backoff_delay(retry, a) for a in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_a_republished_message_drops_the_brokers_bookkeeping() -> None:
    headers = {"x-death": [{}], "x-delivery-count": 3, "x-first-death-queue": "q", "x-hookline-key": "c1"}
    assert republished_headers(headers, **{"x-hookline-attempt": 2}) == {
        "x-hookline-key": "c1",
        "x-hookline-attempt": 2,
    }
    assert republished_headers({"x-hookline-attempt": 3}, **{"x-hookline-attempt": None}) == {}


class FakeMessage:
    """Records what settle() did to it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def ack(self) -> None:
        self.calls.append("ack")

    async def reject(self, requeue: bool = False) -> None:
        self.calls.append(f"reject(requeue={requeue})")

    async def nack(self, requeue: bool = True) -> None:
        self.calls.append(f"nack(requeue={requeue})")


@pytest.mark.parametrize(
    ("verdict", "lane", "calls"),
    [
        (Verdict.DONE, Lane.ORDERED, ["ack"]),
        (Verdict.GIVE_UP, Lane.SHARED, ["reject(requeue=False)"]),
        (Verdict.RETRY, Lane.ORDERED, []),
        (Verdict.HOLD, Lane.ORDERED, []),
        (Verdict.BROKEN, Lane.SHARED, ["nack(requeue=True)"]),
        (Verdict.BROKEN, Lane.ORDERED, ["reject(requeue=False)"]),
    ],
)
async def test_settle_does_what_the_table_says(verdict: Verdict, lane: Lane, calls: list[str]) -> None:
    message = FakeMessage()
    action = await settle(message, verdict, lane)  # type: ignore[arg-type]
    assert message.calls == calls
    assert action is SETTLEMENT[(verdict, lane)]
    assert action is not Action.DELAY_THEN_ACK
