"""`python -m dispatcher`: keep the broker's topology in line with the registry until SIGTERM."""

from __future__ import annotations

import argparse
import sys

from dispatcher.service import Dispatcher
from shared.runtime.main import run_service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hookline dispatcher", description=__doc__)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics, /healthz, /readyz here (default HOOKLINE_METRICS_PORT; off if unset; 0: any free port)",
    )
    args = parser.parse_args(argv)
    return run_service("dispatcher", Dispatcher, metrics_port=args.metrics_port)


if __name__ == "__main__":
    sys.exit(main())
