"""The worker's unordered path in one process: CPU per execution, without broker or database.

`python -m bench.worker_path [--executions N] [--no-freeze]` runs N deliveries of the bench's
`drain` trigger (one `map` step) through what a worker does with each: the delivery's state
read from its headers, the flow gate, a run slot, the runner (decode, watchdog, workflow,
record, settle). The recorder is stubbed (every record pending in a turn of the loop commits
at once, as a batch would) and the channel takes acks without sending them, so what is
measured is hookline's own Python: `time.process_time` per execution, and what the garbage
collector took of it. `gc.freeze()` runs first, as `run_service` does (`--no-freeze`: not).

It reaches into the worker's private parts on purpose: it measures the path, not an API.
`make bench` measures the whole; this tells which part of a worker's CPU is its own code,
and moves by a few percent between runs where the bench's drain moves by twenty.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import aiormq
import uvloop

from shared.logs import setup_logging
from shared.runtime.heap import freeze_startup_objects
from shared.settings import load_settings
from shared.spec.loader import load_file
from shared.wire.messages import Invocation, RequestData, invocation_encoder
from worker.consumer import Runner
from worker.deliveries import Acks, Delivery
from worker.engine import Workflow
from worker.execution import Reporter
from worker.flow import FlowGate
from worker.service import Worker

TRIGGERS = Path(__file__).with_name("triggers.yaml")
WORKSPACE, TRIGGER, QUEUE = "bench", "drain", "bench.queue"
IN_FLIGHT = 32  # the worker's default concurrency: deliveries run together
WARM_UP = 500


class _Workflows:
    """The workflow cache, holding the one compiled workflow."""

    def __init__(self, workflow: Workflow) -> None:
        self._workflow = workflow

    async def get(self, workspace: str, trigger: str, version: int) -> Workflow:
        return self._workflow


class _Recorder:
    """Commits every record asked for in one turn of the loop together, at its end."""

    def __init__(self) -> None:
        self._pending: list[asyncio.Future[None]] = []

    async def record(self, record: Any) -> None:
        future = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._commit)
        await future

    def _commit(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.set_result(None)


class _Channel:
    """An aiormq channel that takes settlements and sends nothing."""

    is_closed = False

    async def basic_ack(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def basic_nack(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def basic_reject(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Delivered:
    """What aiormq hands a consumer: body, header (properties), tag, routing key."""

    __slots__ = ("body", "delivery_tag", "header", "properties", "routing_key")

    def __init__(self, body: bytes, tag: int) -> None:
        self.body = body
        self.delivery_tag = tag
        self.routing_key = f"{WORKSPACE}.{TRIGGER}"
        self.header = self  # `message.header.properties`
        # As a quorum queue delivers a first copy: the delivery count is its only header.
        self.properties = aiormq.spec.Basic.Properties(delivery_mode=2, headers={"x-delivery-count": 0})


def _bodies(count: int) -> list[bytes]:
    request = RequestData(
        method="POST",
        path=f"/hooks/{WORKSPACE}/{TRIGGER}",
        content_type="application/json",
        body_kind="json",
        body={"id": 7, "name": "x" * 1000},  # about the bench's 1 KiB body
    )
    now = time.time()
    return [
        invocation_encoder.encode(
            Invocation(
                id=str(uuid.uuid4()),
                workspace=WORKSPACE,
                trigger=TRIGGER,
                version=1,
                mode="async",
                received_at=now,
                request=request,
            )
        )
        for _ in range(count)
    ]


def _worker() -> Worker:
    trigger = next(t for w in load_file(TRIGGERS) for t in w.triggers if t.name == TRIGGER)
    # Never connected: the URLs are only parsed.
    settings = load_settings(
        {
            "HOOKLINE_DATABASE_URL": "postgresql://bench@127.0.0.1/bench",
            "HOOKLINE_AMQP_URL": "amqp://127.0.0.1/",
        }
    )
    worker = Worker(settings, IN_FLIGHT)
    stopping = asyncio.Event()
    worker._gate = FlowGate(None, settings.flow_lease_seconds, stopping)  # type: ignore[arg-type]
    worker._queue_triggers = {QUEUE: (WORKSPACE, TRIGGER)}
    worker._runner = Runner(
        _Workflows(Workflow(trigger)),  # type: ignore[arg-type]
        Reporter(_Recorder(), None, None),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # holds: an unordered run never asks
        None,  # type: ignore[arg-type]  # delays: a run that succeeds is not retried
        None,  # type: ignore[arg-type]  # invocations: nothing is paused
        prefix="bench",
        delivery_limit=10,
        stopping=stopping,
        watchdog=worker._watchdog,
    )
    return worker


async def measure(executions: int) -> tuple[float, float, int]:
    """CPU us per execution, collector us per execution, collections (all generations)."""
    worker = _worker()
    acks = Acks(_Channel())  # type: ignore[arg-type]
    bodies = _bodies(executions + WARM_UP)
    tags = iter(range(1, len(bodies) + 1))

    async def deliver(batch: list[bytes]) -> None:
        deliveries = [Delivery(_Delivered(body, next(tags)), acks) for body in batch]  # type: ignore[arg-type]
        await asyncio.gather(*(worker._run_unordered(delivery, QUEUE) for delivery in deliveries))
        if not all(delivery.settled for delivery in deliveries):
            raise RuntimeError("a delivery was left unsettled: the harness no longer runs the worker's path")

    await deliver(bodies[:WARM_UP])
    collecting = [0.0, 0.0, 0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[1] = time.perf_counter()
        else:
            collecting[0] += time.perf_counter() - collecting[1]
            collecting[2] += 1

    gc.callbacks.append(timed)
    started = time.process_time()
    try:
        for i in range(WARM_UP, len(bodies), IN_FLIGHT):
            await deliver(bodies[i : i + IN_FLIGHT])
    finally:
        gc.callbacks.remove(timed)
    cpu = time.process_time() - started
    return cpu / executions * 1e6, collecting[0] / executions * 1e6, int(collecting[2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_path", description=__doc__)
    parser.add_argument("--executions", type=int, default=20_000, help="measured executions (default 20000)")
    parser.add_argument("--no-freeze", action="store_true", help="leave start-up objects to the collector")
    args = parser.parse_args(argv)
    # The worker's log line per execution is part of its cost: formatted, written to memory.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging("worker", "INFO", True)
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(io.StringIO())
    if not args.no_freeze:
        freeze_startup_objects()
    try:
        cpu, collector, collections = uvloop.run(measure(args.executions))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    print(
        f"{cpu:.1f} us CPU per execution, of which the collector {collector:.1f} us"
        f" ({collections} collections; {len(gc.get_objects())} objects tracked,"
        f" {gc.get_freeze_count()} frozen)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
