"""The ceiling's HTTP side: the least an ingress can do, on the same server and client library.

`POST /async/{queue}` reads the body, publishes it persistent to the queue with publisher
confirms (aio-pika's defaults: mandatory, confirmed) and answers 202. `POST /rpc/{queue}`
publishes it the same way with `reply_to` on direct reply-to and answers with the reply.
Served like hookline's ingress: uvicorn, uvloop, httptools, the same worker count and
keep-alive. `python -m bench.ceiling_app --port P --workers N` (BENCH_AMQP_URL set: one URL,
or a cluster's, comma separated, of which each server process connects to one at random).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import uvicorn
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractIncomingMessage
from litestar import Litestar, Request, Response, post

from bench.broker import one_node

REPLY_TO = "amq.rabbitmq.reply-to"


class Link:
    """One connection, one confirm channel consuming direct reply-to, replies by id."""

    connection: AbstractConnection
    channel: AbstractChannel
    exchange: AbstractExchange

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[bytes]] = {}

    async def open(self, url: str) -> None:
        self.connection = await aio_pika.connect(url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = self.channel.default_exchange
        replies = await self.channel.get_queue(REPLY_TO, ensure=False)
        await replies.consume(self.on_reply, no_ack=True)

    async def on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self.waiting.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message.body)


def create_app() -> Litestar:
    link = Link()

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await link.open(one_node(os.environ["BENCH_AMQP_URL"]))
        try:
            yield
        finally:
            await link.connection.close()

    @post("/async/{queue:str}", status_code=202)
    async def accept(request: Request[Any, Any, Any], queue: str) -> Response[bytes]:
        body = await request.body()
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await link.exchange.publish(message, routing_key=queue)
        return Response(b'{"accepted":true}', status_code=202, media_type="application/json")

    @post("/rpc/{queue:str}", status_code=200)
    async def rpc(request: Request[Any, Any, Any], queue: str) -> Response[bytes]:
        body = await request.body()
        correlation_id = str(uuid.uuid4())
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        link.waiting[correlation_id] = future
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            correlation_id=correlation_id,
            reply_to=REPLY_TO,
        )
        try:
            await link.exchange.publish(message, routing_key=queue)
            reply = await asyncio.wait_for(future, 10)
        finally:
            link.waiting.pop(correlation_id, None)
        return Response(reply, status_code=200, media_type="application/json")

    return Litestar(route_handlers=[accept, rpc], lifespan=[lifespan], openapi_config=None, debug=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling_app", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    # The same server settings as ingress/__main__.py.
    uvicorn.run(
        "bench.ceiling_app:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
