"""The scenarios: each measures hookline and its ceiling under the same load, one after the other.

Every function returns plain data (dicts of numbers) for the report and the JSON file.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from bench import broker
from bench.cpu import CpuMeter
from bench.harness import PREFIX, WORKSPACE, Bench, read_stats
from bench.load import Load, run_wrk
from shared import topology
from shared.broker import queue_state
from shared.ids import uuid7
from shared.localservers import LocalRabbitMQ
from shared.messages import Invocation, RequestData, invocation_encoder

Result = dict[str, Any]


def cpu_meter(bench: Bench) -> CpuMeter:
    """CPU per role: hookline's services, the ceiling's, and the servers."""

    def roots() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for running in bench.processes.running.values():
            out.setdefault(running.role, []).append(running.process.pid)
        for server in bench.servers:
            if server.pid is not None:
                out["rabbitmq" if isinstance(server, LocalRabbitMQ) else "postgres"] = [server.pid]
        return out

    return CpuMeter(roots)


async def load(
    bench: Bench,
    label: str,
    url: str,
    headers: dict[str, str],
    connections: int | None = None,
    seconds: float | None = None,
    every: Any = None,
) -> tuple[Load, dict[str, float]]:
    """A warm-up, then the measured load with the CPU it used per role (and a profile)."""
    options = bench.options
    connections = connections or options.connections
    await run_wrk(url, bench.body_file, headers=headers, connections=connections, seconds=options.warmup)
    meter = cpu_meter(bench)
    profiler = bench.profiler(label)
    meter.start()
    try:
        result = await run_wrk(
            url,
            bench.body_file,
            headers=headers,
            connections=connections,
            seconds=seconds or options.seconds,
            every=every,
        )
    finally:
        cpu = meter.stop()
        if profiler is not None:
            profiler.stop()
    return result, cpu


def measured(result: Load, cpu: dict[str, float], **extra: Any) -> Result:
    """A load's figures, the CPU per role, and the CPU per request (steadier than rates when
    the machine is shared: other work slows us down but does not make a request cost more)."""
    per_request = {
        role: round(10 * percent * result.seconds / result.requests, 3) if result.requests else 0.0
        for role, percent in cpu.items()
    }
    return {**asdict(result), "cpu_percent": cpu, "cpu_ms_per_request": per_request, **extra}


# -- 1. async accept -----------------------------------------------------------------------


async def async_accept(bench: Bench) -> Result:
    """Pure ingress: publish with confirm and answer, nobody consuming."""

    async def purge(side: str) -> None:
        if side == "ceiling":
            await broker.purge(bench.amqp, broker.ASYNC_QUEUE)
        else:
            await bench.purge_hookline()

    ceiling, hookline = await paired(
        bench,
        "accept",
        (bench.ceiling_url("async", broker.ASYNC_QUEUE), {}),
        (bench.hook_url("accept"), bench.headers),
        between=purge,
    )
    return {"ceiling": ceiling, "hookline": hookline}


async def paired(
    bench: Bench,
    label: str,
    ceiling: tuple[str, dict[str, str]],
    hookline: tuple[str, dict[str, str]],
    connections: int | None = None,
    seconds: float | None = None,
    between: Callable[[str], Awaitable[None]] | None = None,
) -> tuple[Result, Result]:
    """Ceiling, hookline, hookline, ceiling: a load that drifts on a shared machine weighs on
    both sides alike. Each side's two runs are merged (`merge`)."""
    runs: dict[str, list[Result]] = {"ceiling": [], "hookline": []}
    for side in ("ceiling", "hookline", "hookline", "ceiling"):
        url, headers = ceiling if side == "ceiling" else hookline
        name = f"{label}-{side}-{len(runs[side]) + 1}"
        result, cpu = await load(bench, name, url, headers, connections, seconds)
        runs[side].append(measured(result, cpu))
        if between is not None:
            await between(side)
    return merge(runs["ceiling"]), merge(runs["hookline"])


def merge(runs: list[Result]) -> Result:
    """Runs of one side as one: requests and time added up, latency percentiles averaged."""
    seconds = sum(r["seconds"] for r in runs)
    requests = sum(r["requests"] for r in runs)
    roles = {role for r in runs for role in r["cpu_percent"]}
    cpu = {
        role: round(sum(r["cpu_percent"].get(role, 0) * r["seconds"] for r in runs) / seconds)
        for role in roles
    }
    out: Result = {
        "requests": requests,
        "seconds": round(seconds, 3),
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        **{k: round(sum(r[k] for r in runs) / len(runs), 3) for k in ("p50_ms", "p90_ms", "p99_ms")},
        "max_ms": max(r["max_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "cpu_percent": cpu,
        "cpu_ms_per_request": {
            role: round(10 * percent * seconds / requests, 3) if requests else 0.0
            for role, percent in cpu.items()
        },
        "runs": [{k: r[k] for k in ("rps", "p50_ms", "p99_ms", "errors")} for r in runs],
    }
    return out


# -- 2. async end to end -------------------------------------------------------------------


class Backlog:
    """Samples a queue's depth while a load runs."""

    def __init__(self, bench: Bench, queue: str) -> None:
        self.bench = bench
        self.queue = queue
        self.samples: list[tuple[float, int]] = []
        self.started = time.monotonic()

    async def __call__(self) -> None:
        depth = await broker.depth(self.bench.amqp, self.queue)
        self.samples.append((round(time.monotonic() - self.started, 2), depth))

    def summary(self, end_depth: int, rate: float) -> Result:
        """Depth at the end, and its growth over the second half of the load (messages/s)."""
        half = [s for s in self.samples if s[0] >= self.samples[-1][0] / 2] if self.samples else []
        growth = 0.0
        if len(half) >= 2 and half[-1][0] > half[0][0]:
            growth = (half[-1][1] - half[0][1]) / (half[-1][0] - half[0][0])
        # Steady: the backlog stays under a tenth of a second of calls, or does not grow by
        # more than 2 % of the accept rate.
        steady = end_depth <= max(100, rate / 10) or growth <= 0.02 * rate
        return {"end": end_depth, "growth_per_s": round(growth, 1), "steady": steady, "samples": self.samples}


async def async_end_to_end(bench: Bench) -> Result:
    """Accepting while two consumers drain the same queue."""
    out: Result = {}
    files = bench.start_consumers("drain", broker.ASYNC_QUEUE, 100, bench.options.workers)
    await _until_consumers(bench, broker.ASYNC_QUEUE, len(files))
    backlog = Backlog(bench, broker.ASYNC_QUEUE)
    url = bench.ceiling_url("async", broker.ASYNC_QUEUE)
    result, cpu = await load(bench, "end-to-end-ceiling", url, {}, every=backlog)
    end = await broker.depth(bench.amqp, broker.ASYNC_QUEUE)
    out["ceiling"] = measured(result, cpu, backlog=backlog.summary(end, result.rps))
    bench.stop_consumers()
    await broker.purge(bench.amqp, broker.ASYNC_QUEUE)

    work = topology.work_queue_name(PREFIX)
    backlog = Backlog(bench, work)
    began = time.time()
    result, cpu = await load(
        bench, "end-to-end-hookline", bench.hook_url("flow"), bench.headers, every=backlog
    )
    ended = time.time()
    end = await broker.depth(bench.amqp, work)
    lag = await _lag(bench, "flow", began, ended)
    out["hookline"] = measured(result, cpu, backlog=backlog.summary(end, result.rps), lag=lag)
    return out


async def _lag(bench: Bench, trigger: str, began: float, ended: float, within: float = 60) -> Result:
    """Accepted -> executed (finished) of the calls received in [began, ended], once drained."""
    work = topology.work_queue_name(PREFIX)
    deadline = time.monotonic() + within
    await _until_empty(bench, work, deadline)
    connection = await bench.db()
    try:
        previous = -1
        while time.monotonic() < deadline:
            count = await connection.fetchval(
                "select count(*) from executions where workspace = $1 and trigger = $2", WORKSPACE, trigger
            )
            if count == previous:
                break
            previous = count
            await asyncio.sleep(0.5)
        row = await connection.fetchrow(
            """
            select count(*) as n,
                   percentile_cont(0.5) within group (order by lag)::float8 as p50,
                   percentile_cont(0.99) within group (order by lag)::float8 as p99,
                   max(lag)::float8 as max
            from (select extract(epoch from finished_at - received_at) * 1000 as lag
                  from executions
                  where workspace = $1 and trigger = $2
                    and received_at between to_timestamp($3) and to_timestamp($4)) lags
            """,
            WORKSPACE,
            trigger,
            began,
            ended,
        )
        executed = await connection.fetchval(
            "select count(*) from executions where workspace = $1 and trigger = $2"
            " and finished_at between to_timestamp($3) and to_timestamp($4)",
            WORKSPACE,
            trigger,
            began,
            ended,
        )
    finally:
        await connection.close()
    assert row is not None
    return {
        # Runs that finished while the load ran: what the workers sustained beside the ingress.
        "executed_per_second": round(executed / (ended - began), 1),
        "executions": row["n"],
        "p50_ms": round(row["p50"] or 0, 1),
        "p99_ms": round(row["p99"] or 0, 1),
        "max_ms": round(row["max"] or 0, 1),
    }


async def _until_empty(bench: Bench, queue: str, deadline: float) -> None:
    """Until nothing is ready in `queue` (or the deadline passed)."""
    while time.monotonic() < deadline:
        bench.processes.check_alive()
        if await broker.depth(bench.amqp, queue) == 0:
            return
        await asyncio.sleep(0.1)


async def _until_consumers(bench: Bench, queue: str, count: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        bench.processes.check_alive()
        state = await queue_state(bench.amqp, queue)
        if state is not None and state.consumers >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} consumers did not start on {queue}")
        await asyncio.sleep(0.1)


# -- 3. request-response -------------------------------------------------------------------


async def request_response(bench: Bench) -> Result:
    """Through a worker and back, at 50 connections, then one client calling sequentially.

    The ceiling's responders and hookline's workers both run; each side idles while the
    other is measured.
    """
    files = bench.start_consumers(
        "respond", broker.RPC_QUEUE, bench.options.worker_concurrency, bench.options.workers
    )
    await _until_consumers(bench, broker.RPC_QUEUE, len(files))
    ceiling: tuple[str, dict[str, str]] = (bench.ceiling_url("rpc", broker.RPC_QUEUE), {})
    hookline = (bench.hook_url("echo"), bench.headers)
    concurrent = await paired(bench, "rpc", ceiling, hookline)
    sequential = await paired(
        bench, "rpc-1", ceiling, hookline, connections=1, seconds=bench.options.seconds / 2
    )
    bench.stop_consumers()
    return {
        "ceiling": {**concurrent[0], "sequential": sequential[0]},
        "hookline": {**concurrent[1], "sequential": sequential[1]},
    }


# -- 4. ordered lane -----------------------------------------------------------------------


async def ordered_lane(bench: Bench) -> Result:
    """N calls queued on one ordered trigger (single active consumer), then run in order.

    Workers must be stopped when this starts; they are running when it returns.
    """
    calls = bench.options.lane_calls
    out: Result = {}
    # The ceiling: a single-active-consumer quorum queue, prefetch 1, manual ack.
    await run_wrk(
        bench.ceiling_url("async", broker.LANE_QUEUE), bench.body_file, seconds=60, max_answers=calls
    )
    queued = await _settled_depth(bench, broker.LANE_QUEUE)
    files = bench.start_consumers("drain", broker.LANE_QUEUE, 1, bench.options.workers)
    await _until_consumers(bench, broker.LANE_QUEUE, 1)
    meter = _DrainMeter(bench, sum(s.messages for s in read_stats(files)))
    profiler = bench.profiler("lane-ceiling")
    stats = await _until_counted(bench, files, queued)
    out["ceiling"] = {**stats, **meter.stop(stats["messages"])}
    if profiler is not None:
        profiler.stop()
    bench.stop_consumers()

    lane = topology.ordered_queue_name(PREFIX, WORKSPACE, "lane")
    await run_wrk(
        bench.hook_url("lane"), bench.body_file, headers=bench.headers, seconds=60, max_answers=calls
    )
    queued = await _settled_depth(bench, lane)
    await bench.start_workers()
    meter = _DrainMeter(bench, await _recorded(bench, "lane"))
    profiler = bench.profiler("lane-hookline")
    recorded = await _until_recorded(bench, "lane", lane, queued)
    out["hookline"] = {**recorded, **meter.stop(recorded["messages"])}
    if profiler is not None:
        profiler.stop()
    return out


class _DrainMeter:
    """CPU per role from the moment the consumers run (start-up left out) to the drain's end."""

    def __init__(self, bench: Bench, done: int) -> None:
        self._meter = cpu_meter(bench)
        self._done = done
        self._started = time.monotonic()
        self._meter.start()

    def stop(self, done: int) -> Result:
        cpu = self._meter.stop()
        return {
            "cpu_percent": cpu,
            "cpu_seconds": round(time.monotonic() - self._started, 3),
            "cpu_messages": done - self._done,
        }


async def _recorded(bench: Bench, trigger: str) -> int:
    connection = await bench.db()
    try:
        count = await connection.fetchval(
            "select count(*) from executions where workspace = $1 and trigger = $2", WORKSPACE, trigger
        )
    finally:
        await connection.close()
    return int(count)


async def _settled_depth(bench: Bench, queue: str) -> int:
    """The queue's depth once it stopped changing (calls stopped mid-flight still land)."""
    depth = await broker.depth(bench.amqp, queue)
    while True:
        await asyncio.sleep(0.5)
        now = await broker.depth(bench.amqp, queue)
        if now == depth:
            return depth
        depth = now


async def _until_counted(bench: Bench, files: list[Any], total: int, within: float = 120) -> Result:
    """Until the ceiling consumers acknowledged `total` messages; their rate."""
    deadline = time.monotonic() + within
    while True:
        bench.processes.check_alive()
        stats = [s for s in read_stats(files) if s.messages]
        done = sum(s.messages for s in stats)
        if done >= total or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    span = max(s.last for s in stats) - min(s.first for s in stats) if stats else 0.0
    return {
        "messages": done,
        "expected": total,
        "seconds": round(span, 3),
        "per_second": round(done / span, 1) if span else 0.0,
    }


async def _until_recorded(bench: Bench, trigger: str, queue: str, total: int, within: float = 180) -> Result:
    """Until `total` executions of `trigger` are committed; executions per second.

    From the first run's start to the moment the last record was seen committed. The
    queue is watched until empty first (cheap), the table only for the last few.
    """
    deadline = time.monotonic() + within
    await _until_empty(bench, queue, deadline)
    connection = await bench.db()
    try:
        while True:
            count = await connection.fetchval(
                "select count(*) from executions where workspace = $1 and trigger = $2 and status = 'succeeded'",
                WORKSPACE,
                trigger,
            )
            seen = time.time()
            if count >= total or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        rows = await connection.fetch(
            "select extract(epoch from started_at)::float8 as s, extract(epoch from finished_at)::float8 as f"
            " from executions where workspace = $1 and trigger = $2 order by started_at",
            WORKSPACE,
            trigger,
        )
    finally:
        await connection.close()
    span = seen - rows[0]["s"] if rows else 0.0
    return {
        "messages": count,
        "expected": total,
        "seconds": round(span, 3),
        "per_second": round(count / span, 1) if span else 0.0,
        **_run_and_gap(rows),
    }


def _run_and_gap(rows: list[Any]) -> Result:
    """Median time a run took, and median time from one run's end to the next one's start.

    On an ordered lane the gap is what sequencing costs: commit, ack, the next delivery.
    """
    runs = sorted(r["f"] - r["s"] for r in rows)
    gaps = sorted(b["s"] - a["f"] for a, b in itertools.pairwise(rows))
    return {
        "run_ms_p50": round(1000 * runs[len(runs) // 2], 3) if runs else 0.0,
        "gap_ms_p50": round(1000 * gaps[len(gaps) // 2], 3) if gaps else 0.0,
    }


# -- 5. worker drain -----------------------------------------------------------------------


def invocation_bodies(bench: Bench, count: int) -> list[bytes]:
    """`count` invocations of the `drain` trigger, as the ingress would have published them."""
    import msgspec

    parsed = msgspec.json.decode(bench.body)
    request = RequestData(
        method="POST",
        path=f"/hooks/{WORKSPACE}/drain",
        content_type="application/json",
        body_kind="json",
        body=parsed,
    )
    now = time.time()
    return [
        invocation_encoder.encode(
            Invocation(
                id=str(uuid7()),
                workspace=WORKSPACE,
                trigger="drain",
                version=bench.versions["drain"],
                mode="async",
                received_at=now,
                request=request,
            )
        )
        for _ in range(count)
    ]


async def worker_drain(bench: Bench) -> Result:
    """A pre-filled queue drained by the worker processes, records committed before each ack.

    Workers must be stopped when this starts; they are running when it returns.
    """
    count = bench.options.drain_messages
    bodies = invocation_bodies(bench, count)
    out: Result = {}
    await broker.prefill(bench.amqp, "", broker.DRAIN_QUEUE, bodies)
    files = bench.start_consumers("drain", broker.DRAIN_QUEUE, 100, bench.options.workers)
    await _until_consumers(bench, broker.DRAIN_QUEUE, len(files))
    meter = _DrainMeter(bench, sum(s.messages for s in read_stats(files)))
    profiler = bench.profiler("drain-ceiling")
    stats = await _until_counted(bench, files, count)
    out["ceiling"] = {**stats, **meter.stop(stats["messages"])}
    if profiler is not None:
        profiler.stop()
    bench.stop_consumers()

    work = topology.work_queue_name(PREFIX)
    await broker.prefill(
        bench.amqp, topology.invocations_exchange(PREFIX), topology.routing_key(WORKSPACE, "drain"), bodies
    )
    await bench.start_workers()
    meter = _DrainMeter(bench, await _recorded(bench, "drain"))
    profiler = bench.profiler("drain-hookline")
    recorded = await _until_recorded(bench, "drain", work, count)
    out["hookline"] = {**recorded, **meter.stop(recorded["messages"])}
    if profiler is not None:
        profiler.stop()
    return out
