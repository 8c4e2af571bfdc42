"""A service's broker link: a connection lost while the service sets it up is started over;
coalesced acks settle exactly what was acked."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from shared.broker.link import BrokerLink
from worker.deliveries import Delivery, RawConsumer


async def test_a_connection_lost_during_set_up_is_replaced_and_the_link_becomes_ready(amqp_url: str) -> None:
    link = BrokerLink(amqp_url, "hookline-test-link")
    seen: list[AbstractRobustConnection] = []

    async def set_up(connection: AbstractRobustConnection) -> None:
        seen.append(connection)
        if len(seen) == 1:
            await connection.close()  # the broker went away between connecting and set-up
        channel = await connection.channel()
        await channel.close()

    link.on_connect(set_up)
    await link.start()
    try:
        await asyncio.wait_for(link.wait_ready(), 20)
        assert link.ready
        assert len(seen) == 2
        assert link.connection is seen[1]
    finally:
        await link.close()


async def test_coalesced_acks_settle_exactly_the_acked_messages_on_a_real_broker(amqp_url: str) -> None:
    # Ten deliveries in flight, nine acked in one turn of the loop (one multiple ack below
    # the unacked one, single acks above it): the broker must keep exactly the tenth.
    queue_name = f"hookline-test-acks-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=10)
        await channel.declare_queue(queue_name, auto_delete=False)
        try:
            for n in range(10):
                await channel.default_exchange.publish(
                    aio_pika.Message(str(n).encode()), routing_key=queue_name
                )
            got: list[Delivery] = []
            all_in = asyncio.Event()

            async def collect(delivery: Delivery) -> None:
                got.append(delivery)
                if len(got) == 10:
                    all_in.set()

            consumer = RawConsumer(channel, queue_name, collect)  # type: ignore[arg-type]
            await consumer.start()
            await asyncio.wait_for(all_in.wait(), 10)
            kept = got[3]
            await asyncio.gather(*(d.ack() for d in got if d is not kept))
            await consumer.flush()
            await consumer.cancel()
            await asyncio.sleep(0.2)
            assert not channel.is_closed, "the broker refused an ack (unknown delivery tag)"
            await channel.close()  # the unacked one goes back

            check = await connection.channel()
            back = await (await check.declare_queue(queue_name, passive=True)).get(timeout=5)
            assert back.body == kept.body
            await back.ack()
            assert await (await check.declare_queue(queue_name, passive=True)).get(fail=False) is None
        finally:
            cleanup = await connection.channel()
            await cleanup.queue_delete(queue_name)
