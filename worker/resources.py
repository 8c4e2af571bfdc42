"""Workspace connections in a worker: followed from the registry, secrets resolved at use.

The registry holds `${env:NAME}` references; they are resolved here, from this worker's
environment, each time a step needs one (so the registry, the logs and the records never
see a resolved value). One httpx client serves the whole process; each postgres
connection gets a small pool, created on first use and replaced when its spec changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import asyncpg
import httpx

from shared.db.connections import load_connections
from shared.db.notify import follow
from shared.db.pool import DB_ERRORS, init_step_connection
from shared.errors import WorkflowError
from shared.spec.connections import Connection, HttpConnection, PostgresConnection
from shared.spec.secrets import MissingSecret, resolve
from worker.steps.base import HttpTarget, scrub

log = logging.getLogger(__name__)
_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
Key = tuple[str, str]
# A bad DSN is a ValueError; a refused login a PostgresError; the rest as for any pool.
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (*DB_ERRORS, asyncpg.PostgresError, ValueError)


class Connections:
    """The `Resources` steps use: the HTTP client and every workspace's named connections."""

    def __init__(self, pool: asyncpg.Pool, environ: Mapping[str, str] | None = None) -> None:
        self._registry_pool = pool
        # os.environ is read at each use, never copied: only this process's own variables.
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._specs: dict[Key, Connection] = {}
        self._pools: dict[Key, tuple[PostgresConnection, asyncpg.Pool]] = {}
        self._opening = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._follower: asyncio.Task[None] | None = None
        self.http = httpx.AsyncClient(follow_redirects=False, limits=httpx.Limits(max_connections=200))

    def start(self, database_url: str) -> None:
        """Follow the registry: a changed connection takes effect without a restart."""
        self._follower = asyncio.create_task(follow(database_url, self.reload), name="connections")

    async def reload(self) -> None:
        """Read every connection; pools of changed or removed postgres connections are closed."""
        async with self._registry_pool.acquire() as db:
            specs = await load_connections(db)
        self._specs = specs
        for key, (spec, pool) in list(self._pools.items()):
            if specs.get(key) != spec:
                del self._pools[key]
                self._close_later(pool)

    async def _spec(self, workspace: str, name: str) -> Connection:
        spec = self._specs.get((workspace, name))
        if spec is None:
            # Applied a moment ago, before the notification arrived: look once more.
            await self.reload()
            spec = self._specs.get((workspace, name))
        if spec is None:
            raise WorkflowError(f"connection {name!r} does not exist in workspace {workspace}")
        return spec

    async def http_target(self, workspace: str, name: str) -> HttpTarget:
        spec = await self._spec(workspace, name)
        if not isinstance(spec, HttpConnection):
            raise WorkflowError(f"connection {name!r} is not an http connection")
        values = [spec.base_url, *spec.headers.values()]
        return HttpTarget(
            base_url=self._resolve(name, spec.base_url),
            headers={k: self._resolve(name, v) for k, v in spec.headers.items()},
            shown_base_url=spec.base_url,
            secrets=self._secrets(values),
            idempotency_header=spec.idempotency_header,
        )

    async def postgres(self, workspace: str, name: str) -> tuple[asyncpg.Pool, tuple[str, ...]]:
        spec = await self._spec(workspace, name)
        if not isinstance(spec, PostgresConnection):
            raise WorkflowError(f"connection {name!r} is not a postgres connection")
        dsn = self._resolve(name, spec.dsn)
        # A DSN that is one reference holds a password too: scrub it on its own as well.
        password = urlsplit(dsn).password
        secrets = (*self._secrets([spec.dsn]), *([password] if password else []))
        key = (workspace, name)
        async with self._opening:
            current = self._pools.get(key)
            if current is not None and current[0] == spec:
                return current[1], secrets
            try:
                pool = await asyncpg.create_pool(
                    dsn, min_size=0, max_size=spec.pool_size, init=init_step_connection, timeout=10
                )
            except _CONNECT_ERRORS as exc:
                raise WorkflowError(scrub(f"connection {name}: cannot connect: {exc}", secrets)) from None
            assert pool is not None
            self._pools[key] = (spec, pool)
            return pool, secrets

    def _resolve(self, name: str, value: str) -> str:
        try:
            return resolve(value, self._environ)
        except MissingSecret as exc:
            raise WorkflowError(f"connection {name}: {exc} on this worker") from None

    def _secrets(self, values: list[str]) -> tuple[str, ...]:
        names = {n for value in values for n in _REFERENCE.findall(value)}
        return tuple(v for v in (self._environ.get(n) for n in names) if v)

    def _close_later(self, pool: asyncpg.Pool) -> None:
        # Runs still using the old pool finish first: close() waits for released connections.
        task = asyncio.create_task(pool.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Stop following, close every pool and the HTTP client (after in-flight runs ended)."""
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        for _, pool in self._pools.values():
            self._close_later(pool)
        self._pools.clear()
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=10)
        await self.http.aclose()
