"""Upgrading a single-node deployment to a cluster: queues made without the placement
arguments (replicas, leader spread) are declared again as they were made, with nothing
refused, and the calls still route."""

from __future__ import annotations

import contextlib
import logging
import uuid

import aio_pika
import pytest

from dispatcher.reconcile import Reconciler, desired_topology
from shared.db.lanes import TriggerShape
from shared.wire import topology


async def test_queues_made_on_one_node_are_kept_when_the_dispatcher_learns_of_three(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"place-{uuid.uuid4().hex[:6]}"
    shapes = [TriggerShape("w", "plain", False, None)]
    desired = desired_topology(shapes, [], prefix, 100, 5)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        try:
            await Reconciler(connection, prefix, nodes=1).apply(desired)
            with caplog.at_level(logging.ERROR, logger="dispatcher.reconcile"):
                await Reconciler(connection, prefix, nodes=3).apply(desired)
            assert "exists with other arguments" not in caplog.text
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(topology.invocations_exchange(prefix))
            await exchange.publish(aio_pika.Message(b"x"), routing_key=topology.routing_key("w", "plain"))
        finally:
            channel = await connection.channel()
            names = [q.name for q in (desired.dead, desired.work, *desired.retries, *desired.triggers)]
            for name in names:
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    channel = await connection.channel() if channel.is_closed else channel
                    await channel.queue_delete(name)
            for name in (topology.invocations_exchange(prefix), topology.dead_letter_exchange(prefix)):
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    channel = await connection.channel() if channel.is_closed else channel
                    await channel.exchange_delete(name)
