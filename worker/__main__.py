"""`python -m worker [--concurrency N]`: one worker process until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

from shared.errors import HooklineError
from shared.logs import setup_logging
from shared.settings import load_settings
from worker.service import Worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hookline worker", description=__doc__)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="unordered executions at once (default HOOKLINE_WORKER_CONCURRENCY or 32)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics, /healthz, /readyz here (default HOOKLINE_METRICS_PORT; off if unset; 0: any free port)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(metrics_port=args.metrics_port)
    except HooklineError as exc:
        print(f"hookline worker: {exc}", file=sys.stderr)
        return 2
    setup_logging("worker", settings.log_level, settings.log_json)
    worker = Worker(settings, args.concurrency or settings.worker_concurrency)
    return uvloop.run(_run(worker))


async def _run(worker: Worker) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    except HooklineError as exc:
        print(f"hookline worker: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
