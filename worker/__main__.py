"""`python -m worker [--concurrency N]`: one worker process until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import sys

from shared.runtime.main import run_service
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
    return run_service(
        "worker",
        lambda settings: Worker(settings, args.concurrency or settings.worker_concurrency),
        metrics_port=args.metrics_port,
    )


if __name__ == "__main__":
    sys.exit(main())
