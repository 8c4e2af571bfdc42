"""The load generator: wrk with bench/wrk.lua, installed from Debian when missing."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from shared.devstack.localservers.processes import _die_with_parent

SCRIPT = Path(__file__).resolve().parent / "wrk.lua"
_MARK = "BENCH_JSON "
_STOPPED = "BENCH_STOPPED"


class LoadError(RuntimeError):
    """Raised when wrk is missing and cannot be installed, or gives no result."""


@dataclass(frozen=True)
class Load:
    """What one wrk run measured (latencies in milliseconds)."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # status_errors + socket_errors
    status_errors: int = 0  # answers >= 400 (wrk's status errors)
    socket_errors: int = 0  # connect, read and write errors, and timeouts


def ensure_wrk() -> str:
    """The path of wrk; installed with apt-get (as root) when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise LoadError("wrk is not installed and we are not root: apt-get install wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            raise LoadError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    found = shutil.which("wrk")
    if not found:
        raise LoadError("wrk is still missing after apt-get install wrk")
    return found


async def run_wrk(
    url: str,
    body_file: Path,
    *,
    headers: dict[str, str] | None = None,
    connections: int = 50,
    seconds: float = 10,
    max_answers: int = 0,
    every: Callable[[], Awaitable[None]] | None = None,
) -> Load:
    """Run wrk (one thread) against `url`; `every()` is awaited each 0.5 s while it runs.

    With `max_answers`, wrk stops after that many answers (or after `seconds`).
    """
    # wrk takes whole seconds.
    argv = [ensure_wrk(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    argv += ["-s", str(SCRIPT), url, "--", str(body_file), str(max_answers)]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        process_group=0,
        preexec_fn=functools.partial(_die_with_parent, signal.SIGTERM, os.getpid()),
    )
    try:
        output = asyncio.ensure_future(_read(process))
        while not output.done():
            await asyncio.wait({output}, timeout=0.5)
            if every is not None and not output.done():
                await every()
        text = output.result()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    return _parse(text)


async def _read(process: asyncio.subprocess.Process) -> str:
    """wrk's output; on the script's stop line, SIGINT ends the run early with its results."""
    assert process.stdout is not None
    lines = []
    async for raw in process.stdout:
        line = raw.decode(errors="replace")
        lines.append(line)
        if line.startswith(_STOPPED):
            process.send_signal(signal.SIGINT)
    await process.wait()
    return "".join(lines)


def _parse(text: str) -> Load:
    line = next((x for x in text.splitlines() if x.startswith(_MARK)), None)
    if line is None:
        raise LoadError(f"wrk gave no result:\n{text[-2000:]}")
    raw = json.loads(line[len(_MARK) :])
    seconds = raw["duration_us"] / 1e6
    socket_errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return Load(
        requests=raw["requests"],
        seconds=round(seconds, 3),
        rps=round(raw["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=raw["status_errors"] + socket_errors,
        status_errors=raw["status_errors"],
        socket_errors=socket_errors,
    )
