"""Samples: the last call each trigger accepted, kept for writing mappings (the API's and
the console's "sample"), as the variables a workflow sees under `request`.

The hot path only puts the confirmed invocation in a dict; a background task writes the
newest per trigger every second, so a burst costs one upsert per trigger, not one per call.
A sample the database refuses is dropped alone; the others of its batch are written.
"""

from __future__ import annotations

import datetime
import logging

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ingress.background import BackgroundWriter
from shared.db.pool import DB_ERRORS
from shared.wire.messages import Invocation, RequestData

log = logging.getLogger(__name__)

_UPSERT = (
    "insert into trigger_samples (workspace, trigger, execution_id, received_at, request)"
    " values ($1, $2, $3::uuid, $4, $5::jsonb)"
    " on conflict (workspace, trigger) do update set execution_id = excluded.execution_id,"
    " received_at = excluded.received_at, request = excluded.request"
    " where trigger_samples.received_at <= excluded.received_at"
)


class Samples(BackgroundWriter):
    """The newest accepted invocation per trigger, written every `every` seconds."""

    def __init__(self, pool: asyncpg.Pool, every: float = 1.0) -> None:
        super().__init__("samples", every)
        self._pool = pool
        self._latest: dict[tuple[str, str], Invocation] = {}

    def keep(self, invocation: Invocation) -> None:
        """The broker confirmed this call: it is its trigger's sample until a newer one."""
        self._latest[(invocation.workspace, invocation.trigger)] = invocation

    async def write(self) -> None:
        """Write what was kept since the last time (a lost write loses only a sample)."""
        if not self._latest:
            return
        batch, self._latest = self._latest, {}
        try:
            await self._write(batch)
        except BaseException:
            # Not written (a cancel at shutdown, the database away): keep the newest for the next try.
            self._latest = {**batch, **self._latest}
            raise

    async def _write(self, batch: dict[tuple[str, str], Invocation]) -> None:
        rows = [_row(x) for x in batch.values()]
        try:
            async with self._pool.acquire(timeout=5) as connection:
                try:
                    await connection.executemany(_UPSERT, rows)
                except DB_ERRORS:
                    raise
                except (asyncpg.PostgresError, ValueError, TypeError, RecursionError):
                    # Refused, not an outage: one tenant's odd sample must not keep the
                    # others out. Each is written on its own; one refused again is dropped.
                    await _write_each(connection, rows)
        except DB_ERRORS as exc:
            log.warning("samples not written (%s)", type(exc).__name__)
            self._latest = {**batch, **self._latest}


Row = tuple[str, str, str, datetime.datetime, RequestData]


def _row(x: Invocation) -> Row:
    return (
        x.workspace,
        x.trigger,
        x.id,
        datetime.datetime.fromtimestamp(x.received_at, datetime.UTC),
        x.request,  # the pool's jsonb codec encodes it (NUL made U+FFFD)
    )


async def _write_each(connection: PoolConnectionProxy[asyncpg.Record], rows: list[Row]) -> None:
    for row in rows:
        try:
            await connection.execute(_UPSERT, *row)
        except DB_ERRORS:
            raise
        except (asyncpg.PostgresError, ValueError, TypeError, RecursionError) as exc:
            log.warning(
                "sample of %s/%s dropped (%s)",
                row[0],
                row[1],
                type(exc).__name__,
                extra={"workspace": row[0], "trigger": row[1], "execution_id": row[2]},
            )
