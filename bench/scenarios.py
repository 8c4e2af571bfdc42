"""The scenarios: each measures hookline and its ceiling under the same load, one after the other.

Every function returns plain data (dicts of numbers) for the report and the JSON file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench import broker
from bench.drain import DrainMeter, settled_depth, until_counted, until_recorded, until_settled
from bench.harness import PREFIX, WORKSPACE, Bench, read_stats
from bench.load import Load, run_wrk
from shared.broker.inspection import queue_state
from shared.ids import uuid7
from shared.wire import topology
from shared.wire.messages import Invocation, RequestData, invocation_encoder

Result = dict[str, Any]


@dataclass(frozen=True)
class Run:
    """One measured load: wrk's figures, the CPU per role, and when it ran (after the warm-up)."""

    result: Load
    cpu: dict[str, float]
    began: float  # time.time() as the measured load started
    ended: float  # and as wrk ended


async def load(
    bench: Bench,
    label: str,
    url: str,
    headers: dict[str, str],
    connections: int | None = None,
    seconds: float | None = None,
    every: Callable[[], Awaitable[None]] | None = None,
) -> Run:
    """A warm-up, then the measured load with the CPU it used per role (and a profile)."""
    options = bench.options
    connections = connections or options.connections
    await run_wrk(url, bench.body_file, headers=headers, connections=connections, seconds=options.warmup)
    meter = bench.cpu_meter()
    profiler = bench.profiler(label)
    meter.start()
    began = time.time()
    try:
        result = await run_wrk(
            url,
            bench.body_file,
            headers=headers,
            connections=connections,
            seconds=seconds or options.seconds,
            every=every,
        )
        ended = time.time()
    finally:
        cpu = meter.stop()
        if profiler is not None:
            profiler.stop()
    return Run(result, cpu, began, ended)


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
        run = await load(bench, name, url, headers, connections, seconds)
        runs[side].append(measured(run.result, run.cpu))
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
        **{k: sum(r.get(k, 0) for r in runs) for k in ("errors", "status_errors", "socket_errors")},
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
    """Samples a queue's depth while a load runs (wall clock, as the records' received_at)."""

    def __init__(self, bench: Bench, queue: str) -> None:
        self.bench = bench
        self.queue = queue
        self.samples: list[tuple[float, int]] = []  # (time.time(), depth)

    async def __call__(self) -> None:
        depth = await broker.depth(self.bench.amqp, self.queue)
        self.samples.append((time.time(), depth))

    def summary(self, began: float, end_depth: int, rate: float) -> Result:
        return backlog_summary(self.samples, began, end_depth, rate)


def backlog_summary(samples: list[tuple[float, int]], began: float, end_depth: int, rate: float) -> Result:
    """Depth at the end, and its growth over the second half of the load (messages/s).

    `began` is when the measured load started: samples are kept as seconds from then.
    """
    relative = [(round(t - began, 2), depth) for t, depth in samples if t >= began]
    half = [s for s in relative if s[0] >= relative[-1][0] / 2] if relative else []
    growth = 0.0
    if len(half) >= 2 and half[-1][0] > half[0][0]:
        growth = (half[-1][1] - half[0][1]) / (half[-1][0] - half[0][0])
    # Steady: the backlog stays under a tenth of a second of calls, or does not grow by
    # more than 2 % of the accept rate.
    steady = end_depth <= max(100, rate / 10) or growth <= 0.02 * rate
    return {"end": end_depth, "growth_per_s": round(growth, 1), "steady": steady, "samples": relative}


async def async_end_to_end(bench: Bench) -> Result:
    """Accepting while two consumers drain the same queue."""
    out: Result = {}
    files = bench.start_consumers("drain", broker.ASYNC_QUEUE, 100, bench.options.workers)
    await _until_consumers(bench, broker.ASYNC_QUEUE, len(files))
    backlog = Backlog(bench, broker.ASYNC_QUEUE)
    url = bench.ceiling_url("async", broker.ASYNC_QUEUE)
    run = await load(bench, "end-to-end-ceiling", url, {}, every=backlog)
    end = await broker.depth(bench.amqp, broker.ASYNC_QUEUE)
    summary = backlog.summary(run.began, end, run.result.rps)
    out["ceiling"] = measured(run.result, run.cpu, backlog=summary, timed_out=[])
    bench.stop_consumers()
    await broker.purge(bench.amqp, broker.ASYNC_QUEUE)

    work = topology.trigger_queue_name(PREFIX, WORKSPACE, "flow")
    backlog = Backlog(bench, work)
    run = await load(bench, "end-to-end-hookline", bench.hook_url("flow"), bench.headers, every=backlog)
    end = await broker.depth(bench.amqp, work)
    lag = await _lag(bench, "flow", run.began, run.ended)
    summary = backlog.summary(run.began, end, run.result.rps)
    timed_out = lag.pop("timed_out")
    out["hookline"] = measured(run.result, run.cpu, backlog=summary, lag=lag, timed_out=timed_out)
    return out


async def _lag(bench: Bench, trigger: str, began: float, ended: float, within: float = 60) -> Result:
    """Accepted -> executed (finished) of the calls received in [began, ended], once drained."""
    timed_out = []
    queue = topology.trigger_queue_name(PREFIX, WORKSPACE, trigger)
    outstanding = await until_settled(bench, queue, time.monotonic() + within)
    if outstanding is not None:
        timed_out.append(f"{outstanding} after {within:.0f} s: lag of the calls run so far")
    connection = await bench.db()
    try:
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
        "timed_out": timed_out,
    }


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

    Hookline's calls are made by one client, one after the other, so their arrival order is
    the order they were queued in, and the runs' start order can be checked against it.
    Workers must be stopped when this starts; they are running when it returns.
    """
    calls = bench.options.lane_calls
    out: Result = {}
    # The ceiling: a single-active-consumer quorum queue, prefetch 1, manual ack.
    fill = await _fill(bench, bench.ceiling_url("async", broker.LANE_QUEUE), {}, calls, 50)
    queued, unsettled = await settled_depth(bench, broker.LANE_QUEUE)
    files = bench.start_consumers("drain", broker.LANE_QUEUE, 1, bench.options.workers)
    await _until_consumers(bench, broker.LANE_QUEUE, 1)
    meter = DrainMeter(bench, sum(s.messages for s in read_stats(files)))
    profiler = bench.profiler("lane-ceiling")
    try:
        stats = await until_counted(bench, files, queued)
    finally:
        if profiler is not None:
            profiler.stop()
    out["ceiling"] = {**stats, **meter.stop(stats["messages"]), "fill": fill}
    out["ceiling"]["timed_out"] = (
        fill.pop("timed_out") + ([unsettled] if unsettled else []) + stats["timed_out"]
    )
    bench.stop_consumers()

    lane = topology.ordered_queue_name(PREFIX, WORKSPACE, "lane")
    fill = await _fill(bench, bench.hook_url("lane"), bench.headers, calls, 1)
    queued, unsettled = await settled_depth(bench, lane)
    await bench.start_workers()
    meter = DrainMeter(bench, await _recorded(bench, "lane"))
    profiler = bench.profiler("lane-hookline")
    try:
        recorded = await until_recorded(bench, "lane", lane, queued, ordered=True)
    finally:
        if profiler is not None:
            profiler.stop()
    out["hookline"] = {**recorded, **meter.stop(recorded["messages"]), "fill": fill}
    out["hookline"]["timed_out"] = (
        fill.pop("timed_out") + ([unsettled] if unsettled else []) + recorded["timed_out"]
    )
    return out


async def _fill(bench: Bench, url: str, headers: dict[str, str], calls: int, connections: int) -> Result:
    """`calls` calls to `url` (at most 60 s): what wrk counted, errors included."""
    result = await run_wrk(
        url, bench.body_file, headers=headers, connections=connections, seconds=60, max_answers=calls
    )
    fill: Result = {k: getattr(result, k) for k in ("requests", "errors", "status_errors", "socket_errors")}
    fill["timed_out"] = (
        [] if result.requests >= calls else [f"fill: {result.requests:,} of {calls:,} calls in 60 s"]
    )
    return fill


async def _recorded(bench: Bench, trigger: str) -> int:
    connection = await bench.db()
    try:
        count = await connection.fetchval(
            "select count(*) from executions where workspace = $1 and trigger = $2", WORKSPACE, trigger
        )
    finally:
        await connection.close()
    return int(count)


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
    meter = DrainMeter(bench, sum(s.messages for s in read_stats(files)))
    profiler = bench.profiler("drain-ceiling")
    try:
        stats = await until_counted(bench, files, count)
    finally:
        if profiler is not None:
            profiler.stop()
    out["ceiling"] = {**stats, **meter.stop(stats["messages"])}
    bench.stop_consumers()

    work = topology.trigger_queue_name(PREFIX, WORKSPACE, "drain")
    await broker.prefill(
        bench.amqp, topology.invocations_exchange(PREFIX), topology.routing_key(WORKSPACE, "drain"), bodies
    )
    await bench.start_workers()
    meter = DrainMeter(bench, await _recorded(bench, "drain"))
    profiler = bench.profiler("drain-hookline")
    try:
        recorded = await until_recorded(bench, "drain", work, count)
    finally:
        if profiler is not None:
            profiler.stop()
    out["hookline"] = {**recorded, **meter.stop(recorded["messages"])}
    return out
