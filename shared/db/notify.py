"""Follow registry changes: LISTEN on a channel, and reload after every (re)connect.

A notification sent while the listening connection was down is lost, so every new
connection starts with a full reload: a cache can be stale only while PostgreSQL is away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from shared.db.pool import DB_ERRORS

log = logging.getLogger(__name__)

REGISTRY_CHANNEL = "hookline_registry"


async def follow(
    dsn: str,
    reload: Callable[[], Awaitable[None]],
    channel: str = REGISTRY_CHANNEL,
    *,
    debounce: float = 0.05,
) -> None:
    """Call `reload()` now, on every notification and after every reconnect; runs until cancelled.

    Notifications that arrive together (one `apply` touches many rows) cause one reload.
    """
    changed = asyncio.Event()

    def on_notify(*_: object) -> None:
        changed.set()

    delay = 0.2
    while True:
        connection: asyncpg.Connection | None = None
        try:
            connection = await asyncpg.connect(dsn, timeout=10)
            await connection.add_listener(channel, on_notify)
            changed.set()
            while not connection.is_closed():
                try:
                    await asyncio.wait_for(changed.wait(), timeout=5)
                except TimeoutError:
                    # Also notices a silently dead connection: a cheap round trip.
                    await connection.execute("select 1")
                    continue
                await asyncio.sleep(debounce)
                changed.clear()
                try:
                    await reload()
                except DB_ERRORS:
                    raise
                except Exception:
                    # Not an outage: the listener must live on (a dead one would keep serving
                    # revoked keys), so log it and reload again after a pause.
                    log.exception("reload after a %s notification failed; retrying", channel)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    changed.set()
                    continue
                delay = 0.2
        except DB_ERRORS as exc:
            log.warning("registry listener lost PostgreSQL (%s); retrying", type(exc).__name__)
        finally:
            if connection is not None and not connection.is_closed():
                await connection.close()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
