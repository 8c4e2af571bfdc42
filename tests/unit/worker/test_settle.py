"""The acknowledgement table and the retry arithmetic, without a broker."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aio_pika import DeliveryMode
from aio_pika.exceptions import AMQPError

from shared.errors import BrokerUnavailable
from shared.spec.model import Retry
from shared.spec.types import Duration
from shared.wire import topology
from shared.wire.amqp import republished_headers
from worker.consumer import SETTLEMENT, Action, Delay, Lane, Verdict, decide, settle, undecodable_stub
from worker.deliveries import delivery_state
from worker.retries import backoff_delay, retry_properties


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

    body = b"call"
    headers: dict[str, Any] = {"x-hookline-attempt": 1, "x-delivery-count": 0}
    message_id = "m1"
    content_type = "application/msgpack"
    type = "invocation"

    def __init__(self, fails: bool = False, orphaned: bool = False) -> None:
        self.calls: list[str] = []
        self._fails = fails
        self.orphaned = orphaned  # its channel closed: the broker took it back

    async def _settled(self, call: str) -> None:
        if self._fails:
            raise AMQPError("channel closed")
        self.calls.append(call)

    async def ack(self) -> None:
        await self._settled("ack")

    async def reject(self, requeue: bool = False) -> None:
        await self._settled(f"reject(requeue={requeue})")

    async def nack(self, requeue: bool = True) -> None:
        await self._settled(f"nack(requeue={requeue})")


class FakePublisher:
    """A ConfirmedPublisher on the default exchange: records what was published, or fails as
    the real one does (BrokerUnavailable, whatever went wrong: unconfirmed, refused, gone)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.published: list[tuple[bytes, Any, str]] = []
        self._error = error

    async def publish(self, body: bytes, properties: Any, routing_key: str) -> None:
        if self._error is not None:
            raise self._error
        self.published.append((body, properties, routing_key))


def _delay(publisher: FakePublisher) -> Delay:
    return Delay(publisher, "hl.delay.5s", next_attempt=2, runs=1)  # type: ignore[arg-type]


# Every cell of the table; the shared RETRY cell (the delay path) has its own tests below.
@pytest.mark.parametrize(
    ("verdict", "lane", "calls"),
    [
        (Verdict.DONE, Lane.SHARED, ["ack"]),
        (Verdict.DONE, Lane.ORDERED, ["ack"]),
        (Verdict.RETRY, Lane.ORDERED, []),
        (Verdict.GIVE_UP, Lane.SHARED, ["reject(requeue=False)"]),
        (Verdict.GIVE_UP, Lane.ORDERED, ["reject(requeue=False)"]),
        (Verdict.HOLD, Lane.SHARED, ["reject(requeue=False)"]),
        (Verdict.HOLD, Lane.ORDERED, []),
        (Verdict.BROKEN, Lane.SHARED, ["nack(requeue=True)"]),
        (Verdict.BROKEN, Lane.ORDERED, ["reject(requeue=False)"]),
    ],
)
async def test_settle_does_what_the_table_says(verdict: Verdict, lane: Lane, calls: list[str]) -> None:
    message = FakeMessage()
    exchange = FakePublisher()
    action = await settle(message, verdict, lane, _delay(exchange))  # type: ignore[arg-type]
    assert message.calls == calls
    assert action is SETTLEMENT[(verdict, lane)]
    assert exchange.published == []  # only a shared retry goes through a delay queue


async def test_a_shared_retry_is_published_to_its_delay_queue_confirmed_and_then_acked() -> None:
    message = FakeMessage()
    exchange = FakePublisher()
    action = await settle(message, Verdict.RETRY, Lane.SHARED, _delay(exchange))  # type: ignore[arg-type]
    assert action is Action.DELAY_THEN_ACK
    assert message.calls == ["ack"]
    [(body, properties, queue)] = exchange.published
    assert (queue, body) == ("hl.delay.5s", b"call")
    assert properties.message_id == "m1"
    assert properties.headers == {"x-hookline-attempt": 2, "x-hookline-runs": 1}


@pytest.mark.parametrize(
    "error",
    [BrokerUnavailable("the broker did not confirm in time"), BrokerUnavailable("the broker is unreachable")],
    ids=["unconfirmed", "broker-gone"],
)
async def test_a_retry_whose_delay_publish_fails_is_requeued_not_lost(error: BaseException) -> None:
    message = FakeMessage()
    action = await settle(message, Verdict.RETRY, Lane.SHARED, _delay(FakePublisher(error)))  # type: ignore[arg-type]
    assert action is Action.DELAY_THEN_ACK
    assert message.calls == ["nack(requeue=True)"]  # tried again at once; never acked nor dead-lettered


@pytest.mark.parametrize(("verdict", "lane"), list(SETTLEMENT))
async def test_a_delivery_the_broker_took_back_is_neither_settled_nor_published_again(
    verdict: Verdict, lane: Lane
) -> None:
    # A worker cut off mid-run: the broker gave the message to another worker at the missed
    # heartbeat. A delayed retry published on the reconnected link would run it a second time.
    message = FakeMessage(orphaned=True)
    exchange = FakePublisher()
    action = await settle(message, verdict, lane, _delay(exchange))  # type: ignore[arg-type]
    assert action is SETTLEMENT[(verdict, lane)]
    assert (message.calls, exchange.published) == ([], [])


@pytest.mark.parametrize(("verdict", "lane"), list(SETTLEMENT))
async def test_a_closed_channel_while_settling_raises_nothing(verdict: Verdict, lane: Lane) -> None:
    message = FakeMessage(fails=True)
    action = await settle(message, verdict, lane, _delay(FakePublisher()))  # type: ignore[arg-type]
    assert action is SETTLEMENT[(verdict, lane)]  # the broker redelivers it; the record upserts


class Undecodable:
    """A delivery whose body is not an invocation: only its id and routing key are known."""

    def __init__(self, message_id: str | None, routing_key: str | None) -> None:
        self.message_id = message_id
        self.routing_key = routing_key


ID = "0190f000-0000-7000-8000-000000000001"


def test_an_undecodable_message_is_recorded_under_its_id_and_trigger() -> None:
    stub = undecodable_stub(Undecodable(ID, "shop.orders"))  # type: ignore[arg-type]
    assert stub is not None
    assert (stub.id, stub.workspace, stub.trigger, stub.version, stub.mode) == (
        ID,
        "shop",
        "orders",
        0,
        "async",
    )


@pytest.mark.parametrize(
    ("message_id", "routing_key"),
    [
        (None, "shop.orders"),
        ("not-a-uuid", "shop.orders"),
        (ID, None),
        (ID, "shop"),
        (ID, ".orders"),
        (ID, "shop."),
        (ID, "shop.orders.v2"),
    ],
)
def test_an_undecodable_message_without_a_uuid_or_a_trigger_key_has_no_record(
    message_id: str | None, routing_key: str | None
) -> None:
    assert undecodable_stub(Undecodable(message_id, routing_key)) is None  # type: ignore[arg-type]


class Headed:
    """A delivery as the retry helpers read it: its headers and what a copy keeps."""

    body = b"call"
    message_id = "m1"
    content_type = "application/msgpack"
    type = "invocation"

    def __init__(self, headers: dict[str, Any] | None) -> None:
        self.headers = headers


@pytest.mark.parametrize(
    ("headers", "read"),
    [
        (None, (1, 0, False, False, 0)),
        ({}, (1, 0, False, False, 0)),
        (
            {
                "x-hookline-attempt": 3,
                "x-hookline-runs": 5,
                topology.REPLAYED_HEADER: True,
                topology.PARKED_HEADER: True,
                "x-delivery-count": 2,
            },
            (3, 5, True, True, 2),
        ),
        # A header of the wrong type is read as missing, never as a number.
        (
            {"x-hookline-attempt": "3", "x-hookline-runs": True, "x-delivery-count": 1.5},
            (1, 0, False, False, 0),
        ),
    ],
)
def test_a_deliverys_attempt_runs_and_redeliveries_are_read_from_its_headers(
    headers: dict[str, Any] | None, read: tuple[int, int, bool, bool, int]
) -> None:
    state = delivery_state(headers)
    assert (state.attempt, state.runs_before, state.replayed, state.parked, state.redeliveries) == read


@pytest.mark.parametrize("is_parked", [False, True])
def test_a_retry_copy_is_persistent_and_keeps_the_calls_id_type_and_headers(is_parked: bool) -> None:
    message = Headed({"x-hookline-key": "c1", "x-delivery-count": 2, "x-death": [{}]})
    copy = retry_properties(message, 2, 3, parked=is_parked)  # type: ignore[arg-type]
    assert (copy.message_id, copy.content_type, copy.message_type) == (
        "m1",
        "application/msgpack",
        "invocation",
    )
    assert copy.delivery_mode == int(DeliveryMode.PERSISTENT)
    expected: dict[str, Any] = {"x-hookline-key": "c1", "x-hookline-attempt": 2, "x-hookline-runs": 3}
    if is_parked:
        expected[topology.PARKED_HEADER] = True
    assert copy.headers == expected


async def test_a_failed_delay_and_an_unsettled_delivery_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.consumer"):
        await settle(
            FakeMessage(),
            Verdict.RETRY,
            Lane.SHARED,
            _delay(FakePublisher(BrokerUnavailable("the broker did not confirm in time"))),
        )  # type: ignore[arg-type]
        await settle(FakeMessage(fails=True), Verdict.DONE, Lane.SHARED)  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == [
        "retry not delayed (the broker did not confirm in time); requeued",
        "delivery not settled (AMQPError); it will be redelivered",
    ]
