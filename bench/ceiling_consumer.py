"""The ceiling's consuming side: a drain (ack each delivery) or a responder (reply, then ack).

`python -m bench.ceiling_consumer drain|respond --queue Q --prefetch N --stats FILE`
(BENCH_AMQP_URL set: one URL, or a cluster's of which it connects to one at random). Manual acks, uvloop, aio-pika: what a worker does with no work.
Its counts go to FILE (JSON: messages, first and last delivery times) whenever it has been
idle for a moment, and at exit, so the harness can tell when a pre-filled queue is drained.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aio_pika
import msgspec
import uvloop
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from bench.broker import one_node


class Stats(msgspec.Struct):
    """What one consumer process did."""

    messages: int = 0
    first: float = 0.0
    last: float = 0.0


class Consumer:
    def __init__(self, mode: str, stats_file: Path) -> None:
        self.mode = mode
        self.stats = Stats()
        self.stats_file = stats_file
        self.replies: AbstractExchange | None = None
        self._written = -1

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        if self.mode == "respond" and self.replies is not None and message.reply_to:
            await self.replies.publish(
                aio_pika.Message(message.body, correlation_id=message.correlation_id),
                routing_key=message.reply_to,
                mandatory=False,
            )
        await message.ack()
        now = time.time()
        stats = self.stats
        if stats.messages == 0:
            stats.first = now
        stats.messages += 1
        stats.last = now

    def write(self) -> None:
        if self._written == self.stats.messages:
            return
        temporary = self.stats_file.with_suffix(".tmp")
        temporary.write_bytes(msgspec.json.encode(self.stats))
        temporary.replace(self.stats_file)
        self._written = self.stats.messages

    async def run(self, url: str, queue: str, prefetch: int) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        connection = await aio_pika.connect(url)
        async with connection:
            self.replies = (await connection.channel(publisher_confirms=False)).default_exchange
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=prefetch)
            source = await channel.get_queue(queue, ensure=False)
            await source.consume(self.on_message)
            self.write()
            while not stop.is_set():
                seen = self.stats.messages
                try:
                    await asyncio.wait_for(stop.wait(), 0.2)
                except TimeoutError:
                    if self.stats.messages == seen:
                        self.write()  # idle for 0.2 s: tell the harness where we are
        self.write()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling_consumer", description=__doc__)
    parser.add_argument("mode", choices=("drain", "respond"))
    parser.add_argument("--queue", required=True)
    parser.add_argument("--prefetch", type=int, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    args = parser.parse_args(argv)
    consumer = Consumer(args.mode, args.stats)
    uvloop.run(consumer.run(one_node(os.environ["BENCH_AMQP_URL"]), args.queue, args.prefetch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
