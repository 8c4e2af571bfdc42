"""The registry listener outlives what goes wrong in a reload, and one bad stored trigger
does not take the others down: a process that stopped following would serve revoked keys."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from shared.db.notify import follow
from shared.db.pool import Connection
from shared.db.registry import load_registry
from tests.helpers import apply_yaml


async def test_a_failing_reload_is_retried_and_later_notifications_still_arrive(
    database_url: str, db: Connection
) -> None:
    channel = "hookline_test_follow"
    calls = 0
    reloaded = asyncio.Event()

    async def reload() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a reload that fails for a reason that is not an outage")
        reloaded.set()

    task = asyncio.create_task(follow(database_url, reload, channel))
    try:
        await asyncio.wait_for(reloaded.wait(), 10)  # the failed first reload was tried again
        assert calls == 2
        reloaded.clear()
        await db.execute(f"notify {channel}")
        await asyncio.wait_for(reloaded.wait(), 10)
        assert calls == 3
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _Rollback(Exception):
    pass


async def test_a_stored_trigger_that_no_longer_decodes_is_skipped_not_fatal(
    db: asyncpg.Connection, workspace: str
) -> None:
    await apply_yaml(
        db,
        f"""
workspace: {workspace}
triggers:
  - {{name: good, auth: {{type: none}}, workflow: [{{id: r, respond: {{status: 200}}}}]}}
  - {{name: broken, auth: {{type: none}}, workflow: [{{id: r, respond: {{status: 200}}}}]}}
""",
    )
    names: set[tuple[str, str]] = set()
    with contextlib.suppress(_Rollback):
        async with db.transaction():  # the damage never reaches the session's services
            await db.execute(
                "update triggers set spec = '{\"mode\": 42}' where workspace = $1 and name = 'broken'",
                workspace,
            )
            names = {(r.workspace, r.name) for r in await load_registry(db)}
            raise _Rollback
    assert (workspace, "good") in names
    assert (workspace, "broken") not in names
