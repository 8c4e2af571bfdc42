"""How a service process starts: settings, logging, signals and uvloop, written once.

`python -m worker` and `python -m dispatcher` call `run_service`; the ingress, which uvicorn
runs, shares `start` (settings and logging) only.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Protocol

import asyncpg
import uvloop

from shared.errors import HooklineError
from shared.logs import setup_logging
from shared.settings import STATE_DIR, Settings, load_settings


class Service(Protocol):
    """A long-running service: `run()` until `stop()` (called from a signal handler)."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


def start(name: str, **overrides: object) -> Settings | None:
    """Settings from the environment and logging set up; None (one line on stderr) if they are bad."""
    try:
        settings = load_settings(None, STATE_DIR, **overrides)
    except HooklineError as exc:
        print(f"hookline {name}: {exc}", file=sys.stderr)
        return None
    setup_logging(name, settings.log_level, settings.log_json)
    return settings


def run_service(name: str, build: Callable[[Settings], Service], **overrides: object) -> int:
    """Run the service `build(settings)` on uvloop until SIGTERM or SIGINT; the exit code.

    2: bad settings; 1: the service failed (one line on stderr); 0: stopped.
    """
    settings = start(name, **overrides)
    if settings is None:
        return 2
    return uvloop.run(_serve(name, build(settings)))


async def _serve(name: str, service: Service) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop)
    try:
        await service.run()
    except HooklineError as exc:
        print(f"hookline {name}: {exc}", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as exc:
        # Refused, not unreachable (an outage is waited out): a missing migration, a privilege.
        print(
            f"hookline {name}: the database refused: {exc} (is it migrated? `hookline migrate`)",
            file=sys.stderr,
        )
        return 1
    return 0
