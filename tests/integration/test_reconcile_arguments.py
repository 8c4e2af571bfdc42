"""A queue whose arguments changed (a new delivery limit or bound) cannot be re-declared:
the dispatcher keeps it, says so, and still applies the rest of the topology."""

from __future__ import annotations

import contextlib
import logging
import uuid

import aio_pika
import pytest

from dispatcher.reconcile import Reconciler, desired_topology
from shared.db.lanes import TriggerShape
from shared.wire import topology


async def test_a_changed_queue_setting_does_not_stop_new_triggers_from_routing(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"args-{uuid.uuid4().hex[:6]}"
    shapes = [TriggerShape("w", "plain", False, None)]
    before = desired_topology(shapes, [], prefix, 100, 5)
    after = desired_topology(shapes, [], prefix, 100, 7)  # HOOKLINE_DELIVERY_LIMIT changed
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        try:
            await Reconciler(connection, prefix).apply(before)
            with caplog.at_level(logging.ERROR, logger="dispatcher.reconcile"):
                await Reconciler(connection, prefix).apply(after)
            assert f"queue {topology.work_queue_name(prefix)} exists with other arguments" in caplog.text
            # Everything after the refused declare was still applied: the key routes.
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(topology.invocations_exchange(prefix))
            await exchange.publish(aio_pika.Message(b"x"), routing_key=topology.routing_key("w", "plain"))
            for tier in topology.RETRY_TIERS:
                await channel.get_queue(topology.retry_queue_name(prefix, tier), ensure=True)
        finally:
            channel = await connection.channel()
            for queue in (before.dead, before.work, *before.retries):
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(queue.name)
                    channel = await connection.channel() if channel.is_closed else channel
            for name in (topology.invocations_exchange(prefix), topology.dead_letter_exchange(prefix)):
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.exchange_delete(name)
