"""Workspace connections in a worker: followed from the registry, secrets resolved at use.

The registry holds `${env:NAME}` and `${secret:NAME}` references; they are resolved here,
from this worker's environment (connections are written by the operator) and the
connection's own workspace's secrets, each time a step needs one (so the registry, the
logs and the records never see a resolved value). One httpx client serves the operator's
targets, one egress-checked client the targets workspaces choose (one more per workspace with
its own allow-list, so a pooled connection is never shared across lists); each postgres
connection gets a small pool, created on first use and replaced when its spec or resolved DSN
changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

import asyncpg
import httpx

from shared.db.connections import load_connections
from shared.db.egress import every_workspace_allow
from shared.db.notify import follow
from shared.db.pool import DB_ERRORS
from shared.db.secrets import SecretCipher, load_secrets
from shared.errors import WorkflowError
from shared.spec.connections import Connection, HttpConnection, PostgresConnection
from shared.spec.egress import AllowEntry, EgressPolicy
from shared.spec.secrets import MissingSecret, Sources
from worker.egress import guarded_client
from worker.step_databases import (
    DatabaseIdentity,
    StepDatabaseRefused,
    connect_arguments,
    database_identity,
    step_connection_init,
)
from worker.steps.base import HttpTarget, scrub

log = logging.getLogger(__name__)
Key = tuple[str, str]
# A bad DSN is a ValueError; a refused login a PostgresError; the rest as for any pool.
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (*DB_ERRORS, asyncpg.PostgresError, ValueError)


class Connections:
    """The `Resources` steps use: the HTTP client and every workspace's named connections."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        environ: Mapping[str, str] | None = None,
        egress_allow: tuple[AllowEntry, ...] = (),
        cipher: SecretCipher | None = None,
    ) -> None:
        self._registry_pool = pool
        self._cipher = cipher
        self._workspace_secrets: dict[str, dict[str, str]] = {}
        # os.environ is read at each use, never copied: only this process's own variables.
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._specs: dict[Key, Connection] = {}
        # Keyed by spec and resolved DSN: a workspace changing a `${secret:...}` in it is a new pool.
        self._pools: dict[Key, tuple[PostgresConnection, str, asyncpg.Pool]] = {}
        self._opening = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._follower: asyncio.Task[None] | None = None
        self._own: DatabaseIdentity | None = None  # hookline's database, which no step may reach
        self._limits = httpx.Limits(max_connections=200)
        self.http = httpx.AsyncClient(follow_redirects=False, limits=self._limits)
        self._policy = EgressPolicy(egress_allow)
        self._guarded = guarded_client(self._policy, self._limits)
        self._allow: dict[str, tuple[AllowEntry, ...]] = {}
        self._guarded_by_workspace: dict[str, tuple[tuple[AllowEntry, ...], httpx.AsyncClient]] = {}
        self._retired: list[httpx.AsyncClient] = []  # a replaced list's client: closed at close()

    def start(self, database_url: str) -> None:
        """Follow the registry: a changed connection takes effect without a restart."""
        self._follower = asyncio.create_task(follow(database_url, self.reload), name="connections")

    async def reload(self) -> None:
        """Read every connection; pools of changed or removed postgres connections are closed."""
        async with self._registry_pool.acquire() as db:
            specs = await load_connections(db)
            self._allow = await every_workspace_allow(db)
            self._workspace_secrets = await load_secrets(db, self._cipher)
        self._specs = specs
        for key, (spec, _, pool) in list(self._pools.items()):
            if specs.get(key) != spec:
                del self._pools[key]
                self._close_later(pool)

    def guarded(self, workspace: str) -> httpx.AsyncClient:
        allow = self._allow.get(workspace)
        if not allow:
            return self._guarded
        current = self._guarded_by_workspace.get(workspace)
        if current is None or current[0] != allow:
            if current is not None:
                self._retired.append(current[1])  # runs may still be reading through it
            current = (allow, guarded_client(self._policy.with_allowed(allow), self._limits))
            self._guarded_by_workspace[workspace] = current
        return current[1]

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
        sources = self._sources(workspace)
        values = [spec.base_url, *spec.headers.values()]
        return HttpTarget(
            base_url=self._resolve(sources, name, spec.base_url),
            headers={k: self._resolve(sources, name, v) for k, v in spec.headers.items()},
            shown_base_url=spec.base_url,
            secrets=self._secrets(sources, values),
            idempotency_header=spec.idempotency_header,
        )

    async def postgres(self, workspace: str, name: str) -> tuple[asyncpg.Pool, tuple[str, ...]]:
        spec = await self._spec(workspace, name)
        if not isinstance(spec, PostgresConnection):
            raise WorkflowError(f"connection {name!r} is not a postgres connection")
        sources = self._sources(workspace)
        dsn = self._resolve(sources, name, spec.dsn)
        # A DSN that is one reference holds a password too: scrub it on its own as well.
        password = urlsplit(dsn).password
        secrets = (*self._secrets(sources, [spec.dsn]), *([password] if password else []))
        key = (workspace, name)
        async with self._opening:
            current = self._pools.get(key)
            if current is not None and current[:2] == (spec, dsn):
                return current[2], secrets
            try:
                if self._own is None:
                    async with self._registry_pool.acquire() as db:
                        self._own = await database_identity(db)
                arguments = connect_arguments(dsn)
                pool = await asyncpg.create_pool(
                    min_size=0,
                    max_size=spec.pool_size,
                    init=step_connection_init(self._own),
                    timeout=10,
                    **arguments,
                )
                assert pool is not None
                try:
                    async with pool.acquire(timeout=10):
                        pass  # opened and checked now, so a refused database fails here, whole
                except BaseException:
                    await pool.close()
                    raise
            except StepDatabaseRefused as exc:
                raise WorkflowError(f"connection {name}: {exc}") from None
            except _CONNECT_ERRORS as exc:
                raise WorkflowError(scrub(f"connection {name}: cannot connect: {exc}", secrets)) from None
            if current is not None:
                self._close_later(current[2])
            self._pools[key] = (spec, dsn, pool)
            return pool, secrets

    def _sources(self, workspace: str) -> Sources:
        """What the connections of `workspace` resolve from: any variable (the operator wrote
        them) and the workspace's own secrets, never another workspace's."""
        return Sources(
            workspace=workspace, environ=self._environ, secrets=self._workspace_secrets.get(workspace, {})
        )

    @staticmethod
    def _resolve(sources: Sources, name: str, value: str) -> str:
        try:
            return sources.resolve(value)
        except MissingSecret as exc:
            raise WorkflowError(f"connection {name}: {exc} on this worker") from None

    @staticmethod
    def _secrets(sources: Sources, values: list[str]) -> tuple[str, ...]:
        """The resolved value of every reference in `values`, to scrub from errors and records."""
        return tuple(v for v in sources.values_of(values) if v)

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
        for _, _, pool in self._pools.values():
            self._close_later(pool)
        self._pools.clear()
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=10)
        clients = [self.http, self._guarded, *self._retired]
        for client in (*clients, *(c for _, c in self._guarded_by_workspace.values())):
            await client.aclose()
