"""The end of a drain, and what it measured: scenarios 4 and 5 (and scenario 2's lag) wait here.

A drain is over when the broker holds nothing more for it: nothing ready in the queue (a
passive declare) and nothing delivered but unacknowledged (rabbitmqctl's list_channels;
list_queues reports a quorum queue from a statistics tick every 5 s, so it shows a drained
queue as full, or a full one as drained, for seconds). Only then are the records counted,
once: every acknowledged message must have its record committed by then. Every wait has a
deadline; one that passes is named in the result's `timed_out`, which fails the scenario.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import broker
from bench.harness import WORKSPACE, Bench, read_stats

Result = dict[str, Any]
Row = Mapping[str, Any]  # an asyncpg Record or a dict: s, f (started, finished), r (received), id


class DrainMeter:
    """CPU per role from the moment the consumers run (start-up left out) to the drain's end."""

    def __init__(self, bench: Bench, done: int) -> None:
        self._meter = bench.cpu_meter()
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


async def until_empty(bench: Bench, queue: str, deadline: float) -> bool:
    """Until nothing is ready in `queue`; False if the deadline passed first."""
    while True:
        bench.processes.check_alive()
        if await broker.depth(bench.amqp, queue) == 0:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


async def until_settled(bench: Bench, queue: str, deadline: float) -> str | None:
    """Until `queue` has nothing ready and nobody holds an unacknowledged message.

    None once settled, else what was still outstanding at the deadline. Nothing publishes
    while this waits, so once ready is 0 messages only leave (acknowledged) or come back
    (rejected): ready is asked again after the unacknowledged count reads 0.
    """
    while True:
        if not await until_empty(bench, queue, deadline):
            ready = await broker.depth(bench.amqp, queue)
            return f"{ready:,} messages still ready in {queue}"
        held = await bench.unacknowledged()
        if held == 0 and await broker.depth(bench.amqp, queue) == 0:
            return None
        if time.monotonic() > deadline:
            return f"{held:,} messages of {queue} still unacknowledged"
        await asyncio.sleep(0.05)


async def settled_depth(bench: Bench, queue: str, within: float = 30) -> tuple[int, str | None]:
    """The queue's depth once it stopped changing (calls stopped mid-flight still land).

    With what did not settle in `within` seconds, if anything.
    """
    deadline = time.monotonic() + within
    depth = await broker.depth(bench.amqp, queue)
    while True:
        await asyncio.sleep(0.5)
        now = await broker.depth(bench.amqp, queue)
        if now == depth:
            return depth, None
        depth = now
        if time.monotonic() > deadline:
            return depth, f"depth of {queue} still changing after {within:.0f} s"


async def until_counted(bench: Bench, files: list[Path], total: int, within: float = 120) -> Result:
    """Until the ceiling consumers acknowledged `total` messages; their rate."""
    deadline = time.monotonic() + within
    timed_out: list[str] = []
    while True:
        bench.processes.check_alive()
        stats = [s for s in read_stats(files) if s.messages]
        done = sum(s.messages for s in stats)
        if done >= total:
            break
        if time.monotonic() > deadline:
            timed_out.append(f"ceiling consumers acknowledged {done:,} of {total:,} in {within:.0f} s")
            break
        await asyncio.sleep(0.1)
    span = max(s.last for s in stats) - min(s.first for s in stats) if stats else 0.0
    return {
        "messages": done,
        "expected": total,
        "seconds": round(span, 3),
        "per_second": round(done / span, 1) if span else 0.0,
        "timed_out": timed_out,
    }


async def until_recorded(
    bench: Bench, trigger: str, queue: str, total: int, *, ordered: bool = False, within: float = 180
) -> Result:
    """Once `queue` is settled, the committed executions of `trigger` (read once) and their rate.

    `messages` is the count of succeeded records at that moment; it must equal `total`. The
    rate runs from the first run's start to the last one's finish, from the records (the
    last batch's commit, a few ms, is left out; no polling granularity is added). With
    `ordered`, whether they ran in arrival order, one at a time (`lane_order`).
    """
    timed_out: list[str] = []
    outstanding = await until_settled(bench, queue, time.monotonic() + within)
    if outstanding is not None:
        timed_out.append(f"{outstanding} after {within:.0f} s")
    connection = await bench.db()
    try:
        count = await connection.fetchval(
            "select count(*) from executions where workspace = $1 and trigger = $2 and status = 'succeeded'",
            WORKSPACE,
            trigger,
        )
        records = await connection.fetch(
            "select id::text as id, extract(epoch from received_at)::float8 as r,"
            " extract(epoch from started_at)::float8 as s, extract(epoch from finished_at)::float8 as f"
            " from executions where workspace = $1 and trigger = $2 and finished_at is not null"
            " order by started_at, received_at",
            WORKSPACE,
            trigger,
        )
    finally:
        await connection.close()
    rows = [dict(record) for record in records]
    span = max(r["f"] for r in rows) - rows[0]["s"] if rows else 0.0
    return {
        "messages": count,
        "expected": total,
        "seconds": round(span, 3),
        "per_second": round(count / span, 1) if span > 0 else 0.0,
        **run_and_gap(rows),
        **({"order": lane_order(rows)} if ordered else {}),
        "timed_out": timed_out,
    }


def run_and_gap(rows: Sequence[Row]) -> Result:
    """Median time a run took, and median time from one run's end to the next one's start.

    `rows` in start order. On an ordered lane the gap is what sequencing costs: commit,
    ack, the next delivery.
    """
    runs = sorted(r["f"] - r["s"] for r in rows)
    gaps = sorted(b["s"] - a["f"] for a, b in itertools.pairwise(rows))
    return {
        "run_ms_p50": round(1000 * runs[len(runs) // 2], 3) if runs else 0.0,
        "gap_ms_p50": round(1000 * gaps[len(gaps) // 2], 3) if gaps else 0.0,
    }


def lane_order(rows: Sequence[Row]) -> Result:
    """Whether the runs started in arrival order, one at a time.

    Arrival order is received_at, then id (UUIDv7, time-ordered) on a tie. `out_of_order`
    counts runs that started right after a run of a later call; `min_gap_ms` is the smallest
    time from one run's finish to the next one's start (negative: they overlapped).
    """
    started = sorted(rows, key=lambda r: (r["s"], r["r"], r["id"]))
    arrival = {r["id"]: rank for rank, r in enumerate(sorted(rows, key=lambda r: (r["r"], r["id"])))}
    pairs = list(itertools.pairwise(started))
    out_of_order = sum(arrival[b["id"]] < arrival[a["id"]] for a, b in pairs)
    gaps = [b["s"] - a["f"] for a, b in pairs]
    return {
        "runs": len(rows),
        "out_of_order": out_of_order,
        "overlaps": sum(gap < 0 for gap in gaps),
        "min_gap_ms": round(1000 * min(gaps), 3) if gaps else 0.0,
    }
