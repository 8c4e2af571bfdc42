"""A delivery's headers are read once into its `state`; every copy published again gets its
properties from shared/wire/amqp.py. Without a broker."""

from __future__ import annotations

from typing import Any

from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from shared.wire.amqp import invocation_properties, republished
from worker.deliveries import FIRST_DELIVERY, Acks, Delivery, DeliveryState, delivery_state
from worker.retries import retry_properties


def _delivery(properties: Basic.Properties) -> Delivery:
    message = DeliveredMessage(
        delivery=Basic.Deliver(consumer_tag="c", delivery_tag=7, routing_key="ws.t"),
        header=ContentHeader(properties=properties),
        body=b"the invocation",
        channel=None,  # type: ignore[arg-type]
    )
    return Delivery(message, Acks(None))  # type: ignore[arg-type]


def test_a_call_as_the_ingress_published_it_is_a_first_run() -> None:
    properties = invocation_properties("e-1")
    assert properties.headers is None
    assert _delivery(properties).state is FIRST_DELIVERY
    assert delivery_state({"x-delivery-count": 0}) is FIRST_DELIVERY  # as a quorum queue delivers it
    assert DeliveryState(attempt=1, runs_before=0, redeliveries=0, replayed=False, parked=False) == (
        FIRST_DELIVERY
    )


def test_a_retried_redelivered_replayed_copy_reads_each_counter() -> None:
    headers: dict[str, Any] = {
        "x-hookline-attempt": 3,
        "x-hookline-runs": 4,
        "x-delivery-count": 2,
        "x-hookline-replayed": True,
        "x-hookline-parked": True,
        "x-hookline-key": "customer-1",
    }
    assert delivery_state(headers) == DeliveryState(
        attempt=3, runs_before=4, redeliveries=2, replayed=True, parked=True
    )


def test_a_counter_of_the_wrong_type_counts_as_absent() -> None:
    headers: dict[str, Any] = {"x-hookline-attempt": "3", "x-hookline-runs": True, "x-delivery-count": None}
    assert delivery_state(headers) == FIRST_DELIVERY


def test_a_retry_copy_keeps_id_type_and_key_and_counts_on_without_the_brokers_headers() -> None:
    delivered = _delivery(
        Basic.Properties(
            delivery_mode=2,
            message_id="e-1",
            content_type="application/msgpack",
            message_type="hookline.invocation",
            headers={"x-hookline-key": "c1", "x-delivery-count": 2, "x-death": [{"count": 1}]},
        )
    )
    copy = retry_properties(delivered, next_attempt=2, runs=3)
    assert (copy.delivery_mode, copy.message_id, copy.content_type, copy.message_type, copy.reply_to) == (
        2,
        "e-1",
        "application/msgpack",
        "hookline.invocation",
        None,
    )
    assert copy.headers == {"x-hookline-key": "c1", "x-hookline-attempt": 2, "x-hookline-runs": 3}
    assert delivery_state(copy.headers) == DeliveryState(attempt=2, runs_before=3)
    parked = retry_properties(delivered, next_attempt=1, runs=2, parked=True)
    assert delivery_state(parked.headers) == DeliveryState(attempt=1, runs_before=2, parked=True)


def test_a_replayed_dead_letter_starts_a_fresh_budget_of_attempts() -> None:
    copy = republished(
        "e-1",
        {"x-hookline-attempt": 3, "x-hookline-runs": 3, "x-hookline-key": "c1", "x-first-death-queue": "q"},
        content_type="application/msgpack",
        message_type="hookline.invocation",
        **{"x-hookline-attempt": None, "x-hookline-runs": None, "x-hookline-replayed": True},
    )
    assert copy.headers == {"x-hookline-key": "c1", "x-hookline-replayed": True}


def test_a_request_response_call_asks_for_its_reply_by_its_id() -> None:
    properties = invocation_properties("e-2", reply_to="amq.rabbitmq.reply-to", ordering_key="c9")
    assert (properties.correlation_id, properties.reply_to, properties.headers) == (
        "e-2",
        "amq.rabbitmq.reply-to",
        {"x-hookline-key": "c9"},
    )
    resumed = invocation_properties("e-3", replayed=True)
    assert (resumed.correlation_id, resumed.reply_to, resumed.headers) == (
        None,
        None,
        {"x-hookline-replayed": True},
    )
