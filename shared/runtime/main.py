"""How a service process starts: settings, logging, signals and uvloop, written once.

`python -m worker` and `python -m dispatcher` call `run_service`; the ingress, which uvicorn
runs, shares `start` (settings and logging) only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import uvloop

from shared.errors import HooklineError
from shared.logs import setup_logging
from shared.runtime import tracing
from shared.runtime.heap import freeze_startup_objects
from shared.settings import STATE_DIR, Settings, load_settings

log = logging.getLogger(__name__)

# A stop that has not finished after this long says what it still waits for (every task's
# stack), up to STUCK_REPORTS times: a hung shutdown names its culprit in the log.
STUCK_AFTER_SECONDS = 10.0
STUCK_REPORTS = 3


class Service(Protocol):
    """A long-running service: `run()` until `stop()` (called from a signal handler)."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


def start(name: str, **overrides: object) -> Settings | None:
    """Settings from the environment and logging set up; None (one line on stderr) if they
    are bad (tracing's OTEL_* variables too: each process sets tracing up itself, `traced`)."""
    try:
        settings = load_settings(None, STATE_DIR, **overrides)
        tracing.exporters_wanted(os.environ)
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
    with traced(name):
        service = build(settings)
        freeze_startup_objects()  # imported and built: kept out of every later collection
        return uvloop.run(_serve(name, service))


@contextlib.contextmanager
def traced(name: str) -> Iterator[None]:
    """Tracing on for the block if the OTEL_* variables ask for it (shared/runtime/tracing.py);
    the last spans exported, within a deadline, as it ends."""
    tracing.start(name)
    try:
        yield
    finally:
        tracing.stop()


async def _serve(name: str, service: Service) -> int:
    loop = asyncio.get_running_loop()
    stuck: list[asyncio.TimerHandle] = []

    def stop() -> None:
        service.stop()
        if not stuck:
            stuck.append(loop.call_later(STUCK_AFTER_SECONDS, _report_stuck, loop, stuck, 1))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
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
    finally:
        for handle in stuck:
            handle.cancel()
    return 0


def _report_stuck(loop: asyncio.AbstractEventLoop, handles: list[asyncio.TimerHandle], report: int) -> None:
    """Log what the stop still waits for: each pending task and the chain of awaits it hangs in."""
    waits = sorted(f"{task.get_name()}: {_awaiting(task)}" for task in asyncio.all_tasks(loop))
    log.warning(
        "still stopping after %.0f s; waiting in %d tasks: %s",
        report * STUCK_AFTER_SECONDS,
        len(waits),
        " | ".join(waits),
    )
    if report < STUCK_REPORTS:
        handles.append(loop.call_later(STUCK_AFTER_SECONDS, _report_stuck, loop, handles, report + 1))


def _awaiting(task: asyncio.Task[Any]) -> str:
    """`outer (file.py:12) > inner (other.py:34) > ...`: where a suspended task waits."""
    where: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(where) < 16:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            where.append(f"{frame.f_code.co_name} ({Path(frame.f_code.co_filename).name}:{frame.f_lineno})")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return " > ".join(where) or repr(task)
