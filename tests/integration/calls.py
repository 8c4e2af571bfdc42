"""Calls in bulk and their executions: send many, wait for all, read them back in order."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shared.db.pool import Connection
from tests.helpers import eventually
from tests.stack import ROOT, Services, services


@dataclass(frozen=True)
class Run:
    """One execution as the delivery tests look at it."""

    id: str
    status: str
    attempts: int
    started_at: float
    finished_at: float  # inf while it runs (a keyed call's or a tick's claimed run)
    body: Any
    error: str | None


async def send(
    client: httpx.AsyncClient,
    url: str,
    body: Any,
    *,
    retry_503: bool = False,
    deadline: float = 30,
    idempotent: bool = True,
) -> str:
    """One async call; its execution id. With `retry_503`, a 503 is retried as a caller would.

    An Idempotency-Key makes a resend safe, as it does for any caller: a connection the
    server closed as the request went out is sent again, and can never make a second run.
    Idempotency keys are checked in PostgreSQL, so while it is away the ingress refuses
    keyed calls (503): `idempotent=False` sends none, and resends only a call that never
    reached the server (the connection could not be made).
    """
    give_up = time.monotonic() + deadline
    headers = {"Idempotency-Key": str(uuid.uuid4())} if idempotent else {}
    while True:
        try:
            answer = await client.post(url, json=body, headers=headers)
        except httpx.TransportError as exc:
            if (idempotent or isinstance(exc, httpx.ConnectError)) and time.monotonic() < give_up:
                continue
            raise
        if answer.status_code == 503 and retry_503 and time.monotonic() < give_up:
            await asyncio.sleep(0.05)
            continue
        assert answer.status_code == 202, answer.text
        return str(answer.json()["execution_id"])


async def send_many(
    url: str, bodies: list[Any], concurrency: int = 32, *, idempotent: bool = True
) -> list[str]:
    """Calls sent `concurrency` at a time; their execution ids, in the order of `bodies`."""
    gate = asyncio.Semaphore(concurrency)
    # Idle connections are let go before the ingress's keep-alive (5 s) closes them, so a
    # request is not sent on a connection the server is closing.
    limits = httpx.Limits(max_connections=concurrency, keepalive_expiry=2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(body: Any) -> str:
            async with gate:
                return await send(client, url, body, idempotent=idempotent)

        return list(await asyncio.gather(*(one(b) for b in bodies)))


async def runs(db: Connection, workspace: str, trigger: str | None = None) -> list[Run]:
    """Every execution of the workspace (of one trigger, if given), in order of start."""
    rows = await db.fetch(
        "select id, status, attempts, extract(epoch from started_at) as started,"
        " extract(epoch from finished_at) as finished, request->'body' as body, error"
        " from executions where workspace = $1 and ($2::text is null or trigger = $2)"
        " order by started_at, id",
        workspace,
        trigger,
    )
    return [
        Run(
            str(r["id"]),
            r["status"],
            r["attempts"],
            float(r["started"]),
            float(r["finished"]) if r["finished"] is not None else math.inf,
            r["body"],
            r["error"],
        )
        for r in rows
    ]


async def all_finished(
    db: Connection, workspace: str, count: int, timeout: float, trigger: str | None = None
) -> list[Run]:
    """Poll until `count` executions are final (succeeded, failed, dead); them, in order of start."""

    async def probe() -> list[Run] | None:
        done = [r for r in await runs(db, workspace, trigger) if r.status in ("succeeded", "failed", "dead")]
        assert len(done) == count, f"{len(done)} of {count} executions finished"
        return done

    return await eventually(probe, timeout=timeout, every=0.2)


async def finished(db: Connection, workspace: str, ids: list[str], timeout: float) -> list[Run]:
    """Poll until every one of `ids` is final; all final executions of the workspace."""

    async def probe() -> list[Run] | None:
        done = [r for r in await runs(db, workspace) if r.status in ("succeeded", "failed", "dead")]
        missing = set(ids) - {r.id for r in done}
        assert not missing, f"{len(missing)} of {len(ids)} executions not finished"
        return done

    return await eventually(probe, timeout=timeout, every=0.2)


def never_overlap(ordered: list[Run]) -> None:
    """Assert that each run started after the one before it finished."""
    for before, after in itertools.pairwise(ordered):
        assert after.started_at >= before.finished_at, f"{after.body} started before {before.body} finished"


def cli(stack: Services, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `hookline ARGS` against the stack (with `env` added); the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        env={**os.environ, **stack.env, **(env or {})},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def cli_json(stack: Services, *args: str) -> Any:
    done = cli(stack, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def worker_of(stack: Services, execution_id: str) -> str | None:
    """The name of the running worker whose log records this execution."""
    for name in stack.processes:
        if name.startswith("worker") and execution_id in stack.log(name):
            return name
    return None


async def worker_that_logged(stack: Services, execution_id: str, timeout: float = 15) -> str:
    """`worker_of`, waited for: a worker logs an execution when it ends a run of it, a moment
    after the row a test may have read."""

    async def probe() -> str | None:
        return worker_of(stack, execution_id)

    return await eventually(probe, timeout=timeout)


@contextmanager
def delivery_stack(
    amqp_url: str, database_url: str, log_dir: Path, workers: int = 3, env: dict[str, str] | None = None
) -> Iterator[Services]:
    """Dispatcher, `workers` workers and an ingress on a prefix of their own."""
    prefix = f"dl-{uuid.uuid4().hex[:6]}"
    folder = log_dir / prefix
    folder.mkdir()
    with services(amqp_url, database_url, folder, workers=workers, prefix=prefix, extra_env=env) as stack:
        yield stack
