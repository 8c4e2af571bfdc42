"""A service's broker link: a connection lost while the service sets it up is started over."""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractRobustConnection

from shared.broker import BrokerLink


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
