"""Keeping `hookline up`'s services running: a service that exits on its own is started again
after a backoff; one that keeps exiting (a crash loop) stops the stack instead.

The policy is a pure value of exit times, so it is tested without processes; `Supervisor`
applies it to the `Popen`s `up` started.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Start = Callable[[], "subprocess.Popen[bytes]"]


@dataclass(frozen=True)
class RestartPolicy:
    """At most `max_restarts` restarts of one service within `window` seconds; each restart
    waits `first_delay` doubled per recent restart, up to `max_delay`."""

    max_restarts: int = 5
    window: float = 60.0
    first_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, exits: list[float], now: float) -> float | None:
        """Seconds to wait before the next start, given the service's exit times (this one
        included); None when it is a crash loop and the stack should stop."""
        recent = [t for t in exits if now - t <= self.window]
        if len(recent) > self.max_restarts:
            return None
        return min(self.first_delay * 2.0 ** (len(recent) - 1), self.max_delay)


class CrashLoop(Exception):
    """Raised when a service exited more often than its policy allows."""


@dataclass
class Supervised:
    """One service `up` keeps running: how to start it, its current process, its exits."""

    name: str
    start: Start
    process: subprocess.Popen[bytes]
    exits: list[float] = field(default_factory=list)
    restart_at: float | None = None  # set while waiting out a backoff


class Supervisor:
    """Restarts what exits; `check()` is called from `up`'s wait loop every half second."""

    def __init__(
        self, policy: RestartPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.services: list[Supervised] = []
        self._clock = clock

    def add(self, name: str, start: Start) -> None:
        """Start a service now and keep it running."""
        self.services.append(Supervised(name, start, start()))

    def check(self) -> None:
        """Schedule a restart for each service that exited, start those whose backoff is over.

        Raises CrashLoop when one exited too often.
        """
        now = self._clock()
        for service in self.services:
            if service.restart_at is None and service.process.poll() is not None:
                service.exits.append(now)
                delay = self.policy.delay(service.exits, now)
                code = service.process.returncode
                if delay is None:
                    raise CrashLoop(
                        f"{service.name} exited {len(service.exits)} times within "
                        f"{self.policy.window:.0f} s (last code {code})"
                    )
                print(
                    f"hookline up: {service.name} (pid {service.process.pid}) exited with code {code};"
                    f" restarting in {delay:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
                service.restart_at = now + delay
            if service.restart_at is not None and now >= service.restart_at:
                service.process = service.start()
                service.restart_at = None

    def processes(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        """Every service's current process, for the orderly stop."""
        return [(x.name, x.process) for x in self.services]
