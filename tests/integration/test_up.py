"""`hookline up` as a newcomer runs it: the banner's key answers, a second terminal reaches
the stack with no configuration, nothing secret is left on disk, a killed worker is started
again, Ctrl-C stops everything.

The servers are the session's (through HOOKLINE_AMQP_URL / HOOKLINE_DATABASE_URL, which `up`
honours); starting private ones is what tests/integration/test_localservers.py and the fresh-clone check
cover.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared.devstack.demo_erp import demo_erp_names, drop_demo_erp
from shared.settings import Stack, read_stack
from tests.cleanup import cleanup
from tests.helpers import eventually
from tests.stack import ROOT, free_port


@pytest.fixture
def up_database(postgres_server_url: str) -> Iterator[str]:
    """A database of this test alone: `up` applies the examples' `demo` workspace into it."""
    name = f"hookline_up_{uuid.uuid4().hex[:8]}"
    base = postgres_server_url.rpartition("/")[0]

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(postgres_server_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'create database "{name}"'))
    yield f"{base}/{name}"
    asyncio.run(admin(f'drop database if exists "{name}" with (force)'))
    asyncio.run(drop_demo_erp(postgres_server_url, **demo_erp_names(f"{base}/{name}")))


def _processes_with(marker: str) -> list[str]:
    """Processes whose environment holds `marker` (what `up` started carries its prefix)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append(f"{proc.name} {(proc / 'cmdline').read_bytes()[:100]!r}")
        except OSError:
            continue
    return found


def _banner(log: Path, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Press Ctrl-C to stop." in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"no banner within {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


async def test_up_answers_the_readme_calls_keeps_no_secret_and_stops_on_ctrl_c(
    amqp_url: str, up_database: str, tmp_path: Path
) -> None:
    prefix = f"up-{uuid.uuid4().hex[:6]}"
    port = free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env = {
        **base_env,
        "HOOKLINE_AMQP_URL": amqp_url,
        "HOOKLINE_DATABASE_URL": up_database,
        "HOOKLINE_AMQP_PREFIX": prefix,
        "HOOKLINE_PORT": str(port),
        "HOOKLINE_DEMO_TARGET_PORT": str(free_port()),
    }
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "up", "--examples", str(ROOT / "examples")],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        banner = _banner(log)
        key_match = re.search(r"API key for workspace demo \(shown once\): (\S+)", banner)
        token_match = re.search(r"Admin token \(management API[^)]*\): (\S+)", banner)
        assert key_match, banner
        assert token_match, banner
        key, token = key_match.group(1), token_match.group(1)
        assert f"http://127.0.0.1:{port}/hooks/demo/echo" in banner

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            headers = {"X-API-Key": key}

            async def routed() -> httpx.Response | None:
                # The ingress is ready; the dispatcher may bind the keys a moment later.
                answer = await client.post("/hooks/demo/echo?x=1", json={"a": 1}, headers=headers)
                return None if answer.status_code == 503 else answer

            echo = await eventually(routed, timeout=10)
            assert echo.status_code == 200, echo.text
            assert echo.json()["body"] == {"a": 1}
            assert echo.json()["query"] == {"x": "1"}
            inbox = await client.post("/hooks/demo/inbox", json={"a": 1}, headers=headers)
            assert inbox.status_code == 202, inbox.text
            execution_id = inbox.json()["execution_id"]

        # A second terminal in the same folder: no HOOKLINE_* variables at all.
        async def shown() -> str | None:
            done = subprocess.run(
                [sys.executable, "-m", "shared.cli", "executions", "show", execution_id],
                cwd=tmp_path,
                env=base_env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            return done.stdout if done.returncode == 0 and '"succeeded"' in done.stdout else None

        recorded = json.loads(await eventually(shown, timeout=30))
        assert recorded["output"] == {"body": {"a": 1}, "content_type": "application/json"}  # inbox kept it
        assert recorded["started_at"] <= recorded["finished_at"]
        assert recorded["duration_ms"] >= 0

        # The banner's admin token opens the management API; nothing else does.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            path = f"/api/executions/{execution_id}"
            api = await client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert api.status_code == 200, api.text
            assert api.json()["status"] == "succeeded"
            wrong = await client.get(path, headers={"Authorization": f"Bearer {token}x"})
            assert wrong.status_code == 401

        # A second `up` in the same folder refuses to start, and leaves the first one be.
        second = subprocess.run(
            [sys.executable, "-m", "shared.cli", "up", "--examples", str(ROOT / "examples")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 1
        assert f"another `hookline up` (pid {up.pid}) is running in this folder" in second.stderr
        async with httpx.AsyncClient(timeout=10) as client:
            still = await client.post(
                f"http://127.0.0.1:{port}/hooks/demo/echo", json={}, headers={"X-API-Key": key}
            )
        assert still.status_code == 200

        # Nothing under .hookline/ holds the printed key or the admin token.
        state = tmp_path / ".hookline"
        assert read_stack(state) == Stack(
            amqp_url=amqp_url, database_url=up_database, port=port, amqp_prefix=prefix
        )
        # The secrets key outlives the run (the secrets it encrypts do), readable by its owner only.
        assert (state / "secrets.key").stat().st_mode & 0o777 == 0o600
        for path in state.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert key.encode() not in data, f"the API key in {path}"
                assert token.encode() not in data, f"the admin token in {path}"
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
        if os.environ.get("HOOKLINE_TEST_AMQP_URL"):
            cleanup(amqp_url, up_database, prefix)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert not (tmp_path / ".hookline" / "stack.json").exists()
    assert not _processes_with(f"HOOKLINE_AMQP_PREFIX={prefix}"), "Ctrl-C left services running"


def _children(parent: int, module: str) -> set[int]:
    """Pids of `python -m MODULE` processes whose parent is `parent`."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and argv[1:3] == [b"-m", module.encode()]:
            found.add(int(proc.name))
    return found


async def test_a_worker_killed_with_sigkill_is_started_again_and_every_accepted_call_runs(
    amqp_url: str, up_database: str, tmp_path: Path
) -> None:
    prefix = f"up-{uuid.uuid4().hex[:6]}"
    port = free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env = {
        **base_env,
        "HOOKLINE_AMQP_URL": amqp_url,
        "HOOKLINE_DATABASE_URL": up_database,
        "HOOKLINE_AMQP_PREFIX": prefix,
        "HOOKLINE_PORT": str(port),
        "HOOKLINE_DEMO_TARGET_PORT": str(free_port()),
        # README: "set HOOKLINE_ADMIN_TOKEN to choose your own" (the other test has it made up).
        "HOOKLINE_ADMIN_TOKEN": (chosen := f"chosen-{uuid.uuid4().hex}"),
    }
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "up", "--examples", str(ROOT / "examples")],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        banner = _banner(log)
        key_match = re.search(r"API key for workspace demo \(shown once\): (\S+)", banner)
        assert key_match
        token_match = re.search(r"Admin token \(management API[^)]*\): (\S+)", banner)
        assert token_match
        assert token_match.group(1) == chosen
        headers = {"X-API-Key": key_match.group(1)}
        workers = _children(up.pid, "worker")
        assert len(workers) == 2, workers
        accepted: list[str] = []
        answers: list[int] = []
        stop = asyncio.Event()

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            async def routed() -> bool | None:
                answer = await client.post("/hooks/demo/inbox", json={"n": -1}, headers=headers)
                return None if answer.status_code == 503 else True

            await eventually(routed, timeout=10)
            mine = await client.get("/api/workspaces", headers={"Authorization": f"Bearer {chosen}"})
            assert mine.status_code == 200, mine.text

            async def send() -> None:
                n = 0
                while not stop.is_set():
                    answer = await client.post("/hooks/demo/inbox", json={"n": n}, headers=headers)
                    answers.append(answer.status_code)
                    if answer.status_code == 202:
                        accepted.append(answer.json()["execution_id"])
                    n += 1

            sender = asyncio.create_task(send())
            await eventually(lambda: asyncio.sleep(0, True if len(accepted) >= 20 else None), timeout=20)
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            killed_at = len(accepted)

            async def replaced() -> int | None:
                fresh = _children(up.pid, "worker") - workers
                return fresh.pop() if fresh else None

            newcomer = await eventually(replaced, timeout=10)
            # Calls go on arriving after the new worker is up.
            await eventually(
                lambda: asyncio.sleep(0, True if len(accepted) >= killed_at + 40 else None), timeout=30
            )
            stop.set()
            await sender
        assert up.poll() is None, "the stack stopped"
        assert set(answers) == {202}
        assert (
            f"hookline up: worker (pid {victim}) exited with code -9; restarting in 0.5 s" in log.read_text()
        )

        connection = await asyncpg.connect(up_database)
        try:

            async def all_ran() -> int | None:
                done = await connection.fetchval(
                    "select count(*) from executions where id = any($1::uuid[]) and status = 'succeeded'",
                    accepted,
                )
                return done if done == len(accepted) else None

            await eventually(all_ran, timeout=60, every=0.5)
        finally:
            await connection.close()

        # `hookline status` in a second terminal shows the new worker.
        async def shown() -> dict[str, str] | None:
            done = subprocess.run(
                [sys.executable, "-m", "shared.cli", "status", "--json"],
                cwd=tmp_path,
                env=base_env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            services = json.loads(done.stdout)["services"] if done.stdout else []
            states = {
                x["instance"].rpartition(":")[2]: x["state"] for x in services if x["service"] == "worker"
            }
            return states if states.get(str(newcomer)) == "up" else None

        states = await eventually(shown, timeout=30, every=1)
        assert states[str(newcomer)] == "up"
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
        if os.environ.get("HOOKLINE_TEST_AMQP_URL"):
            cleanup(amqp_url, up_database, prefix)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert not _processes_with(f"HOOKLINE_AMQP_PREFIX={prefix}"), "Ctrl-C left services running"
