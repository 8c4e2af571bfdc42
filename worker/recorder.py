"""Group commit of execution records: callers wait for their row to be durable.

Runs that finish while a write is in flight are written together by the next one, so the
database sees one statement per batch instead of one per execution; there is no timer, so
an idle worker writes a single record at once. While PostgreSQL is away the batch is
retried with backoff and nobody's future resolves: the caller never acks unrecorded work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.db.executions import ExecutionRecord, record_executions
from shared.db.pool import DB_ERRORS
from shared.db.retry import retry_db

log = logging.getLogger(__name__)


class Recorder:
    """Writes ExecutionRecords in batches; `record()` returns once the row is committed."""

    def __init__(self, pool: asyncpg.Pool, max_batch: int = 500) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._pending: list[tuple[ExecutionRecord, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: PoolConnectionProxy[asyncpg.Record] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="recorder")

    async def record(self, record: ExecutionRecord) -> None:
        """Queue one record and wait until it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        self._wake.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    await self._write(batch)
                except Exception as exc:  # noqa: BLE001 (logged in _fail)
                    # Not an outage (those are retried in _write): one record the database
                    # refuses must not fail the others, so each is tried again on its own.
                    await self._let_go()
                    if len(batch) == 1:
                        self._fail(batch[0], exc)
                        continue
                    for one in batch:
                        try:
                            await self._write([one])
                        except Exception as single:  # noqa: BLE001 (logged in _fail)
                            await self._let_go()
                            self._fail(one, single)

    @staticmethod
    def _fail(entry: tuple[ExecutionRecord, asyncio.Future[None]], exc: Exception) -> None:
        # Its caller writes a minimal record in its place and dead-letters the message, and
        # the recorder goes on: one that died here would leave every later run waiting
        # forever. The type only: asyncpg's message quotes the value it could not encode.
        record, future = entry
        log.error(
            "cannot record execution %s (%s)",
            record.id,
            type(exc).__name__,
            extra={"execution_id": record.id, "workspace": record.workspace, "trigger": record.trigger},
        )
        if not future.done():
            future.set_exception(exc)

    async def _write(self, batch: list[tuple[ExecutionRecord, asyncio.Future[None]]]) -> None:
        # A later record of the same execution (a fast redelivery) wins within a batch.
        records = list({record.id: record for record, _ in batch}.values())
        try:
            await self._execute(records)
        except DB_ERRORS:
            # PostgreSQL is away (or our connection died): again on a fresh connection, then
            # with backoff until it is back.
            await retry_db(
                lambda: self._execute(records),
                lambda error: log.warning(
                    "cannot record %d executions (%s); retrying",
                    len(records),
                    type(error).__name__,
                    extra={"count": len(records)},
                ),
            )
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def _execute(self, records: list[ExecutionRecord]) -> None:
        # The recorder keeps one connection: handing it back to the pool after each batch
        # costs a reset round trip (RESET ALL, UNLISTEN *, ...), which on an ordered lane
        # (one record per batch) was a second database round trip per run.
        if self._connection is None:
            self._connection = await self._pool.acquire()
        try:
            await record_executions(self._connection, records)
        except DB_ERRORS:
            await self._let_go()
            raise

    async def _let_go(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*DB_ERRORS):
                await self._pool.release(connection, timeout=5)

    async def close(self) -> None:
        """Stop writing; records still pending are not acknowledged by their callers."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        await self._let_go()
