"""Real hookline service processes for integration tests, on the session's servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.cleanup import cleanup

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StopTimedOut(subprocess.TimeoutExpired):
    """A service that did not exit in time; its message ends with the service's log."""

    def __str__(self) -> str:
        return f"{super().__str__()}; its log ends:\n{self.output}"


@dataclass
class Services:
    """A set of running service processes sharing one environment."""

    env: dict[str, str]
    port: int
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `python -m <module> args` as `name` (e.g. worker-1), output to a log file."""
        module = name.split("-")[0]
        with (self.log_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        self.processes[name] = process
        return process

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.wait()
            # What it still waited for: a service that does not stop in time logs its tasks.
            raise StopTimedOut(exc.cmd, exc.timeout, output=self.log(name)[-6000:]) from None

    def stop_all(self) -> None:
        """Stop everything (ingress, workers, dispatcher); one that hangs does not spare the others."""
        order = ("ingress", "worker", "dispatcher")
        failures = []
        for name in sorted(self.processes, key=lambda n: order.index(n.split("-")[0])):
            try:
                self.stop(name)
            except subprocess.TimeoutExpired as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the ingress says it is ready (broker, database, registry)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"ingress not ready:\n{self.log('ingress')[-3000:]}")


@contextmanager
def services(
    amqp_url: str,
    database_url: str,
    log_dir: Path,
    *,
    workers: int = 2,
    prefix: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Services]:
    """Dispatcher, workers and ingress on a free port; stopped (SIGTERM) afterwards."""
    env = {
        **os.environ,
        "HOOKLINE_AMQP_URL": amqp_url,
        "HOOKLINE_DATABASE_URL": database_url,
        "HOOKLINE_AMQP_PREFIX": prefix,
        "HOOKLINE_ADMIN_TOKEN": "test-admin-token-0123456789",
        "HOOKLINE_LOG_JSON": "true",
        **(extra_env or {}),
    }
    port = free_port()
    env["HOOKLINE_PORT"] = str(port)
    stack = Services(env, port, log_dir)
    try:
        stack.start("dispatcher")
        for i in range(workers):
            stack.start(f"worker-{i + 1}", "--concurrency", "16")
        stack.start("ingress")
        stack.wait_ready()
        yield stack
    finally:
        stack.stop_all()
        # Only the session's shared broker keeps what a stack declared; a private broker (or
        # cluster) goes away whole, and one with a node down would take long to delete from.
        if os.environ.get("HOOKLINE_TEST_AMQP_URL") == amqp_url:
            cleanup(amqp_url, database_url, prefix)
