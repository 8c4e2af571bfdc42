"""Scenario 6, noisy neighbour: one trigger flooded far past its capacity beside a quiet one.

The noisy trigger's runs each wait 200 ms on a local sleeper (little CPU, so its capacity
is the workers' run slots, not the machine), and wrk floods it with no pause: its own
queue (`max_queued`) fills and its callers get 503 with Retry-After. The quiet trigger is
called 20 times a second, first alone, then beside the flood. Measured: the quiet
trigger's refusals (target 0) and its accepted -> executed lag p99 beside the flood
against alone (target within 2x).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from bench import broker
from bench.harness import PREFIX, WORKSPACE, Bench
from shared.db.pool import connect
from shared.db.registry import apply_workspace
from shared.spec.loader import load_text
from shared.wire import topology

Result = dict[str, Any]

SLEEP_MS = 1000
NOISY_BOUND = 500
QUIET_PER_SECOND = 20
# The flood is paced: 2 workers x 24 slots / 1 s a run is ~48 runs/s of capacity, and 250
# calls/s is five times that. An unpaced wrk would offer thousands a second and take every
# core of a 2-core machine from the quiet trigger's calls, which is the load generator's
# cost, not the noisy neighbour's.
FLOOD_PER_SECOND = 250
FLOOD_CALLERS = 25

TRIGGERS = """
workspace: {ws}
triggers:
  - name: noisy
    auth: {{type: none}}
    idempotency: null
    max_queued: {bound}
    workflow:
      - id: wait
        http: {{url: "{sleeper}/sleep/{ms}"}}
  - name: quiet
    auth: {{type: none}}
    idempotency: null
    workflow:
      - id: noted
        map: {{id: "{{{{ request.body.id }}}}"}}
"""


@contextmanager
def sleeper() -> Iterator[str]:
    """A local HTTP server answering `GET /sleep/N` after N ms, on a thread per call."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            time.sleep(int(self.path.rsplit("/", 1)[-1]) / 1000)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="bench-sleeper", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def noisy_neighbour(bench: Bench) -> Result:
    """The quiet trigger alone, then beside the flood (workers running)."""
    seconds = bench.options.seconds
    with sleeper() as url:
        await _apply(bench, url)
        noisy, quiet = _url(bench, "noisy"), _url(bench, "quiet")
        async with httpx.AsyncClient(timeout=10) as client:
            for hook in (noisy, quiet):
                await _until_routed(client, hook)
            warm = await _quiet(client, quiet, bench.options.warmup)  # warm-up, not measured
            alone = await _quiet(client, quiet, seconds)
            flood = asyncio.ensure_future(_flood(noisy, bench.body, seconds + 4))
            await asyncio.sleep(2)  # the noisy queue is full by now
            refused, probed = await _refused(client, noisy, bench.body)
            beside = await _quiet(client, quiet, seconds)
            offered = await flood
        flooded_until = time.time()
        await _until_executed(bench, "quiet", 1 + warm["calls"] + alone["calls"] + beside["calls"])
    noisy_executed = await _executed_per_second(bench, "noisy", flooded_until - seconds - 4, flooded_until)
    await broker.purge(bench.amqp, topology.trigger_queue_name(PREFIX, WORKSPACE, "noisy"))
    alone["lag"] = await _lag(bench, alone["began"], alone["ended"])
    beside["lag"] = await _lag(bench, beside["began"], beside["ended"])
    return {
        "quiet_alone": alone,
        "quiet_beside": beside,
        "noisy": {
            "offered_per_second": offered["per_second"],
            "refused": offered["refused"],
            "statuses": offered["statuses"],
            "executed_per_second": noisy_executed,
            "bound": NOISY_BOUND,
            "probe_status": refused.status_code,
            "probe_retry_after": refused.headers.get("retry-after"),
            "probe_statuses": probed,
        },
    }


async def _flood(url: str, body: bytes, seconds: float) -> Result:
    """FLOOD_PER_SECOND calls a second to `url` for `seconds`, from FLOOD_CALLERS callers."""
    statuses: dict[str, int] = {}
    limits = httpx.Limits(max_connections=FLOOD_CALLERS, keepalive_expiry=2)
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:

        async def caller(offset: int) -> None:
            n = offset
            while (due := began + n / FLOOD_PER_SECOND) < began + seconds:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                try:
                    answer = await client.post(
                        url, content=body, headers={"Content-Type": "application/json"}
                    )
                    status = str(answer.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                statuses[status] = statuses.get(status, 0) + 1
                n += FLOOD_CALLERS

        await asyncio.gather(*(caller(i) for i in range(FLOOD_CALLERS)))
    sent = sum(statuses.values())
    return {
        "per_second": round(sent / (time.monotonic() - began), 1),
        "refused": sent - statuses.get("202", 0),
        "statuses": statuses,
    }


async def _refused(client: httpx.AsyncClient, url: str, body: bytes) -> tuple[httpx.Response, dict[str, int]]:
    """Calls of the flooded trigger, 20 at once, until one is refused (workers free a place
    now and then, and a call may take it): the first refusal, and the statuses seen."""
    seen: dict[str, int] = {}
    refused = None
    for _ in range(10):
        answers = await asyncio.gather(
            *(client.post(url, content=body, headers={"Content-Type": "application/json"}) for _ in range(20))
        )
        for answer in answers:
            seen[str(answer.status_code)] = seen.get(str(answer.status_code), 0) + 1
            if refused is None and answer.status_code != 202:
                refused = answer
        if refused is not None:
            break
    return refused or answers[-1], seen


def _url(bench: Bench, trigger: str) -> str:
    return bench.hook_url(trigger)


async def _apply(bench: Bench, sleeper_url: str) -> None:
    text = TRIGGERS.format(ws=WORKSPACE, bound=NOISY_BOUND, sleeper=sleeper_url, ms=SLEEP_MS)
    async with connect(bench.database_url) as connection, connection.transaction():
        for workspace in load_text(text, "noisy_neighbour"):
            await apply_workspace(connection, workspace)


async def _until_routed(client: httpx.AsyncClient, url: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while (await client.post(url, json={"id": "probe"})).status_code != 202:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not routed within {within:.0f} s")
        await asyncio.sleep(0.2)


async def _quiet(client: httpx.AsyncClient, url: str, seconds: float) -> Result:
    """QUIET_PER_SECOND calls a second for `seconds`, on a fixed schedule; what was answered."""
    began = time.time()
    start = time.monotonic()
    statuses: dict[str, int] = {}
    calls = 0
    while time.monotonic() - start < seconds:
        answer = await client.post(url, json={"id": calls})
        statuses[str(answer.status_code)] = statuses.get(str(answer.status_code), 0) + 1
        calls += 1
        await asyncio.sleep(max(0.0, start + calls / QUIET_PER_SECOND - time.monotonic()))
    return {
        "began": began,
        "ended": time.time(),
        "calls": calls,
        "statuses": statuses,
        "refused": calls - statuses.get("202", 0),
    }


async def _until_executed(bench: Bench, trigger: str, count: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    connection = await bench.db()
    try:
        while time.monotonic() < deadline:
            done = await connection.fetchval(
                "select count(*) from executions where workspace = $1 and trigger = $2"
                " and status in ('succeeded', 'failed', 'dead')",
                WORKSPACE,
                trigger,
            )
            if done >= count:
                return
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def _lag(bench: Bench, began: float, ended: float) -> Result:
    connection = await bench.db()
    try:
        row = await connection.fetchrow(
            """
            select count(*) as n,
                   percentile_cont(0.5) within group (order by lag)::float8 as p50,
                   percentile_cont(0.99) within group (order by lag)::float8 as p99,
                   percentile_cont(0.5) within group (order by wait)::float8 as wait_p50,
                   percentile_cont(0.99) within group (order by wait)::float8 as wait_p99
            from (select extract(epoch from finished_at - received_at) * 1000 as lag,
                         extract(epoch from started_at - received_at) * 1000 as wait
                  from executions
                  where workspace = $1 and trigger = 'quiet'
                    and received_at between to_timestamp($2) and to_timestamp($3)) lags
            """,
            WORKSPACE,
            began,
            ended,
        )
    finally:
        await connection.close()
    assert row is not None
    return {
        "runs": row["n"],
        "p50_ms": round(row["p50"] or 0, 1),
        "p99_ms": round(row["p99"] or 0, 1),
        # received -> started: the ingress, the broker and the wait for a worker's slot.
        "until_started_p50_ms": round(row["wait_p50"] or 0, 1),
        "until_started_p99_ms": round(row["wait_p99"] or 0, 1),
    }


async def _executed_per_second(bench: Bench, trigger: str, began: float, ended: float) -> float:
    connection = await bench.db()
    try:
        count = await connection.fetchval(
            "select count(*) from executions where workspace = $1 and trigger = $2"
            " and finished_at between to_timestamp($3) and to_timestamp($4)",
            WORKSPACE,
            trigger,
            began,
            ended,
        )
    finally:
        await connection.close()
    return round(float(count) / (ended - began), 1)
