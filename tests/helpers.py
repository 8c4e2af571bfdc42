"""Small helpers the tests share: apply a trigger file, make a key, wait for a record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from shared.db.executions import Execution, get_execution
from shared.db.keys import CreatedKey, create_key
from shared.db.pool import Connection
from shared.db.registry import apply_workspace
from shared.errors import NotFound
from shared.spec.loader import load_text

T = TypeVar("T")


async def apply_yaml(connection: Connection, text: str) -> None:
    """Apply in one transaction, as `hookline apply` does (one registry change)."""
    async with connection.transaction():
        for workspace in load_text(text):
            await apply_workspace(connection, workspace)


async def new_key(connection: Connection, workspace: str, *triggers: str, label: str = "test") -> CreatedKey:
    return await create_key(connection, workspace, list(triggers), label)


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 10, every: float = 0.05) -> T:
    """Poll `probe` until it returns something other than None; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = await probe()
        except (AssertionError, httpx.TransportError) as exc:
            last_error, value = exc, None
        if value is not None:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"not reached within {timeout} s") from last_error


async def finished_execution(connection: Connection, execution_id: str, timeout: float = 10) -> Execution:
    async def probe() -> Execution | None:
        try:
            execution = await get_execution(connection, execution_id)
        except NotFound:
            return None
        return execution if execution.status in ("succeeded", "failed", "dead") else None

    return await eventually(probe, timeout)


async def marker_run(connection: Connection, client: httpx.AsyncClient, url: str, **request: Any) -> str:
    """Send a call that must run, after calls that must not have, and wait for its record.

    How "ran nothing" is proven without a timed guess: unordered calls share one work queue,
    so a refused call the ingress wrongly published sits ahead of this marker and is
    delivered before it; once the marker's run is recorded, count. Returns its execution id.
    """
    answer = await client.post(url, **request)
    assert answer.status_code < 300, answer.text
    execution_id = answer.headers.get("x-execution-id") or answer.json()["execution_id"]
    await finished_execution(connection, execution_id)
    return str(execution_id)


async def filed_as_dead_letters(connection: Connection, *ids: str, timeout: float = 10) -> None:
    """Wait until the dispatcher has moved these letters from the dead-letter queue into its table."""

    async def probe() -> bool | None:
        found = await connection.fetchval("select count(*) from dead_letters where id = any($1::text[])", ids)
        return True if found == len(set(ids)) else None

    await eventually(probe, timeout)
