"""`python -m ingress [--workers N]`: serve webhooks with uvicorn (uvloop, httptools with limits)."""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg
import uvicorn

from ingress.limits import LimitedHttpToolsProtocol
from shared.db.pool import connect
from shared.errors import HooklineError
from shared.runtime.main import start
from shared.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hookline ingress", description=__doc__)
    parser.add_argument("--workers", type=int, default=None, help="server processes (default 1)")
    parser.add_argument("--port", type=int, default=None, help="port (default HOOKLINE_PORT or 8080)")
    args = parser.parse_args(argv)
    # uvicorn's own lines (start, stop, errors) go through the same formatter: no log_config.
    settings = start("ingress", port=args.port)
    if settings is None:
        return 2
    if (refused := database_refusal(settings)) is not None:
        print(f"hookline ingress: {refused}", file=sys.stderr)
        return 1
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
        # X-Forwarded-For/-Proto only from the proxies the operator named (none by default;
        # uvicorn would otherwise believe any process on 127.0.0.1).
        proxy_headers=bool(settings.trusted_proxy_list),
        forwarded_allow_ips=settings.trusted_proxy_list or None,
    )
    return 0


def database_refusal(settings: Settings) -> str | None:
    """Why the database cannot be used (unreachable, a certificate refused...), or None.

    Asked once before uvicorn starts: a lifespan that fails prints a page of traceback
    from the server's task groups, where the worker and the dispatcher say one line.
    """

    async def reach() -> None:
        async with connect(settings.database_url):
            pass

    try:
        asyncio.run(reach())
    except HooklineError as exc:
        return str(exc)
    except asyncpg.PostgresError as exc:
        return f"the database refused: {' '.join(str(exc).split())}"
    return None


if __name__ == "__main__":
    sys.exit(main())
