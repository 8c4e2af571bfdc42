"""`python -m bench.run` (`hookline bench`, `make bench`): every scenario, hookline beside its ceiling.

Brings up private RabbitMQ (one node, or a local cluster: --rabbitmq-nodes) and PostgreSQL in a temporary folder, hookline's services and the
ceiling's minimal app and consumers as processes, loads them with wrk on 127.0.0.1, prints
a Markdown table and writes the JSON to bench/results/. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import broker, neighbours, report, scenarios
from bench.harness import Bench, Options
from bench.load import LoadError, ensure_wrk

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = (
    "async_accept",
    "ordered_lane",
    "worker_drain",
    "async_end_to_end",
    "request_response",
    "noisy_neighbour",
)


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


# The run must end within 10 minutes: scenarios stop here, leaving time to stop everything.
WATCHDOG_SECONDS = 540


class Interrupted(Exception):
    """SIGTERM: stop like Ctrl-C."""


async def session(bench: Bench, only: tuple[str, ...], results: dict[str, Any]) -> None:
    """Servers, services, then every scenario, into `results`, within the watchdog's time.

    SIGTERM cancels this task (the loop's handler, so it lands at an await, not in the
    middle of whatever the main thread was doing) and ends it with `Interrupted`. When the
    watchdog fires, `results` keeps the scenarios done and says which one it stopped.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated: list[int] = []

    def on_term() -> None:
        terminated.append(signal.SIGTERM)
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_term)
    running = ["start-up"]
    try:
        async with asyncio.timeout(WATCHDOG_SECONDS):
            await _scenarios(bench, only, results, running)
    except TimeoutError:
        results["watchdog"] = f"stopped after {WATCHDOG_SECONDS} s, during {running[0]}"
        say(results["watchdog"])
    except asyncio.CancelledError:
        if terminated:
            raise Interrupted("SIGTERM") from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        # Ignored from here on: stopping everything must not be cut short (main restores it).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if bench.connected:
            await bench.amqp.close()
    bench.processes.sample_peaks()
    results["memory"] = {
        role: [round(kib / 1024, 1) for kib in peaks]
        for role, peaks in bench.processes.peaks_by_role().items()
    }


async def _scenarios(
    bench: Bench, only: tuple[str, ...], results: dict[str, Any], running: list[str]
) -> None:
    """Every scenario in an order that needs the fewest worker restarts."""
    say(f"starting private RabbitMQ and PostgreSQL in {bench.folder}")
    bench.start_servers()
    await bench.prepare()
    say("starting hookline (dispatcher, ingress) and the ceiling app")
    await bench.start_hookline()
    await bench.start_ceiling()
    results["placement"] = await bench.placement()
    steps: list[tuple[str, Callable[[Bench], Awaitable[dict[str, Any]]], bool]] = [
        # (name, function, workers must be stopped first)
        ("async_accept", scenarios.async_accept, True),
        ("ordered_lane", scenarios.ordered_lane, True),
        ("worker_drain", scenarios.worker_drain, True),
        ("async_end_to_end", scenarios.async_end_to_end, False),
        ("request_response", scenarios.request_response, False),
        ("noisy_neighbour", neighbours.noisy_neighbour, False),
    ]
    for name, run, stopped in steps:
        if name not in only:
            continue
        running[0] = name
        if stopped:
            bench.stop_workers()
        elif not bench.processes.of_role("worker"):
            await bench.start_workers()
        say(f"{name} (load average {os.getloadavg()[0]:.2f})")
        began = time.monotonic()
        results[name] = await run(bench)
        bench.processes.sample_peaks()
        say(f"{name} done in {time.monotonic() - began:.0f} s")


def node_count(value: str) -> int:
    """--rabbitmq-nodes: 1 to 9 (as `hookline up --rabbitmq-nodes`)."""
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 9:
        raise argparse.ArgumentTypeError(f"expected a node count from 1 to 9, got {value!r}")
    return count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hookline bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="each measured load (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up before each load (default 2)")
    parser.add_argument("--connections", type=int, default=50, help="concurrent connections (default 50)")
    parser.add_argument(
        "--drain-messages", type=int, default=20_000, help="scenario 5's queue (default 20000)"
    )
    parser.add_argument("--lane-calls", type=int, default=5_000, help="scenario 4's calls (default 5000)")
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)"
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder for the JSON (default bench/results)"
    )
    parser.add_argument("--check", action="store_true", help="exit with code 3 when a target is missed")
    parser.add_argument(
        "--profile",
        metavar="ROLE",
        action="append",
        help="py-spy on this role's processes during each load (repeatable: ingress, worker,"
        " ceiling-app, ceiling-consumer); profiles go to RESULTS/profiles-<time>/",
    )
    parser.add_argument(
        "--rabbitmq-nodes",
        type=node_count,
        default=1,
        metavar="N",
        help="RabbitMQ nodes (default 1); more run as one local cluster, every service given all"
        " their URLs, both sides' quorum queues with min(3, N) replicas, leaders balanced",
    )
    return parser


def options_of(args: argparse.Namespace) -> Options:
    """How big the run is, from the command line."""
    return Options(
        seconds=args.seconds,
        warmup=args.warmup,
        connections=args.connections,
        drain_messages=args.drain_messages,
        lane_calls=args.lane_calls,
        rabbitmq_nodes=args.rabbitmq_nodes,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = options_of(args)
    try:
        ensure_wrk()
    except LoadError as exc:
        say(str(exc))
        return 1
    started = time.time()
    load_before = os.getloadavg()
    bench = Bench(options)
    bench.profile_roles = tuple(args.profile or ())
    bench.profile_dir = args.results / f"profiles-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(started))}"
    failed = True
    results: dict[str, Any] = {}
    try:
        asyncio.run(session(bench, tuple(args.only or SCENARIOS), results))
        failed = "watchdog" in results
    except (KeyboardInterrupt, Interrupted):
        say("interrupted; stopping everything it started")
        return 130
    except broker.PlacementError as exc:
        say(f"the two sides' queues are not placed alike, no figures: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # A failed run keeps its processes' logs, to see why.
        bench.close(keep_logs=args.results / "last-failed-logs" if failed else None)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    verdict = report.verdicts(results)
    document: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rabbitmq_nodes": options.rabbitmq_nodes,
        "machine": {**report.machine(), **bench.versions_info, "rabbitmq_nodes": options.rabbitmq_nodes},
        "options": options.__dict__,
        "results": results,
        "targets": verdict,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"bench-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(started))}.json"
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(report.header(document))
    print()
    print(report.markdown(results, verdict))
    print()
    print("CPU, % of one core, during each measured load (machine: all cores together):")
    print()
    print(report.cpu_table(results))
    print()
    print(f"{report.machine_line(document)} JSON: {out}")
    if "watchdog" in results:
        return 1
    return 3 if args.check and not all(v["met"] for v in verdict.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
