"""`python -m ingress [--workers N]`: serve webhooks with uvicorn (uvloop, httptools with limits)."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from ingress.limits import LimitedHttpToolsProtocol
from shared.errors import HooklineError
from shared.logs import setup_logging
from shared.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hookline ingress", description=__doc__)
    parser.add_argument("--workers", type=int, default=None, help="server processes (default 1)")
    parser.add_argument("--port", type=int, default=None, help="port (default HOOKLINE_PORT or 8080)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(port=args.port)
    except HooklineError as exc:
        print(f"hookline ingress: {exc}", file=sys.stderr)
        return 2
    # uvicorn's own lines (start, stop, errors) go through the same formatter: no log_config.
    setup_logging("ingress", settings.log_level, settings.log_json)
    uvicorn.run(
        "ingress.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers or settings.ingress_workers,
        loop="uvloop",
        http=LimitedHttpToolsProtocol,  # header size, count and read time (ingress/limits.py)
        limit_concurrency=settings.limit_concurrency,  # connections and calls; above: 503
        lifespan="on",
        access_log=False,
        log_level="warning",
        log_config=None,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
