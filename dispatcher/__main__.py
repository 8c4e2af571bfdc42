"""`python -m dispatcher`: keep the broker's topology in line with the registry until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

from dispatcher.service import Dispatcher
from shared.errors import HooklineError
from shared.logs import setup_logging
from shared.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hookline dispatcher", description=__doc__)
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
        print(f"hookline dispatcher: {exc}", file=sys.stderr)
        return 2
    setup_logging("dispatcher", settings.log_level, settings.log_json)
    return uvloop.run(_run(Dispatcher(settings)))


async def _run(dispatcher: Dispatcher) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, dispatcher.stop)
    try:
        await dispatcher.run()
    except HooklineError as exc:
        print(f"hookline dispatcher: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
