"""`hookline up`'s restart policy and supervisor, without a stack: real short-lived processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.cli.supervision import CrashLoop, RestartPolicy, Supervisor


def test_restarts_back_off_doubling_and_the_sixth_exit_within_a_minute_is_a_crash_loop() -> None:
    policy = RestartPolicy()
    exits: list[float] = []
    delays = []
    for now in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0):
        exits.append(now)
        delays.append(policy.delay(exits, now))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, None]


def test_exits_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy()
    assert policy.delay([0.0, 1.0, 2.0, 3.0, 4.0, 70.0], 70.0) == 0.5


def _sleeper(seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


def test_a_killed_service_is_started_again_after_its_backoff() -> None:
    now = [0.0]
    supervisor = Supervisor(clock=lambda: now[0])
    supervisor.add("worker", lambda: _sleeper(30))
    first = supervisor.services[0].process
    try:
        first.kill()
        first.wait()
        supervisor.check()
        assert supervisor.services[0].process is first  # waiting out 0.5 s
        now[0] = 0.5
        supervisor.check()
        second = supervisor.services[0].process
        assert second is not first
        assert second.poll() is None
    finally:
        for _, process in supervisor.processes():
            process.kill()
            process.wait()


def test_a_service_that_keeps_exiting_stops_the_stack() -> None:
    now = [0.0]
    supervisor = Supervisor(clock=lambda: now[0])
    supervisor.add("worker", lambda: _sleeper(0))
    for _ in range(5):  # five restarts, 10 s apart
        supervisor.services[0].process.wait()
        supervisor.check()
        now[0] += 10.0
        supervisor.check()
    supervisor.services[0].process.wait()
    with pytest.raises(CrashLoop, match=r"^worker exited 6 times within 60 s \(last code 0\)$"):
        supervisor.check()
